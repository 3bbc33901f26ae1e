"""SpikeMamba LM: the PyTorch model against the plain loop implementation (tests/plain_spikemamba.py),
per gate and integration mode, on small seeded checkpoints whose every gate fires; streaming
equals prefill; the loader's refusals."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from neurodeploy.errors import NeurodeployError, UnsupportedCapabilityError
from neurodeploy.model.registry import load_model
from neurodeploy.model.spikemamba_lm.checkpoint import save_checkpoint
from neurodeploy.model.spikemamba_lm.config import SpikeMambaLMConfig
from neurodeploy.model.spikemamba_lm.neuron import GateParameters, gate_initial_state, gate_step
from neurodeploy.model.spikemamba_lm.synthetic import firing_model, write_upstream_checkpoint
from plain_spikemamba import plain_spikemamba

VARIANTS = [  # (integration, gate mode)
    ("pre", "soft"), ("pre", "hard"), ("post", "soft"), ("post", "hard"),
    ("pre_post", "soft"), ("pre_post", "hard"), ("residual", "soft"),
]
NEURONS = [  # (reset, adaptive threshold, refractory period, pooling, rms eps, biases)
    ("subtract", True, 2, "learnable", 2.0 ** -23, False),
    ("zero", False, 0, "none", 1e-5, True),
    ("subtract", False, 3, "none", 2.0 ** -23, True),
]


def make_config(integration="pre_post", gate="soft", reset="subtract", adaptive=True, period=2, pooling="none",
                eps=2.0 ** -23, biases=False, **sizes) -> SpikeMambaLMConfig:
    base = dict(vocab_size=37, d_model=16, n_layer=2, d_state=4, d_conv=4, expand=2)
    base.update(sizes)
    return SpikeMambaLMConfig(**base, spike_integration=integration, spike_gate_mode=gate, reset_mode=reset,
                              adaptive_threshold=adaptive, refractory_period=period, temporal_pooling=pooling,
                              rms_norm_eps=eps, bias=biases, conv_bias=True)


def tokens(batch=2, length=12, vocab=37, seed=3):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def plain(model, toks, **kw):
    c = model.config
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return plain_spikemamba(sd, toks, reset_mode=c.reset_mode, refractory_period=c.refractory_period,
                            temporal_pooling=c.temporal_pooling, rms_eps=c.rms_norm_eps, **kw)


def assert_states_close(state, plain_state, gates, tol=1e-5):
    for layer, ref in zip(state.layers, plain_state):
        assert (layer.mamba.conv_state - ref["conv"]).abs().max() <= tol
        assert (layer.mamba.ssm_state - ref["h"]).abs().max() <= tol
        for gate, g in zip(gates, layer.gates):
            r = ref["gates"][gate]
            for mine, theirs in ((g.v, r["v"]), (g.current, r["I"]), (g.adapt, r["a"]), (g.refractory, r["r"])):
                assert (mine - theirs).abs().max() <= tol


@pytest.mark.parametrize("integration,gate", VARIANTS)
@pytest.mark.parametrize("neuron", NEURONS, ids=["subtract-adaptive-P2-learnable", "zero-P0-eps1e-5-bias", "subtract-P3"])
def test_model_matches_plain_reference(integration, gate, neuron):
    reset, adaptive, period, pooling, eps, biases = neuron
    model = firing_model(make_config(integration, gate, reset, adaptive, period, pooling, eps, biases), seed=1)
    toks = tokens()
    with torch.no_grad():
        out = model(toks)
    ref_logits, ref_spikes, ref_state = plain(model, toks)
    assert (out.logits - ref_logits).abs().max() <= 1e-4
    assert set(out.spikes) == set(ref_spikes)
    for name, spikes in out.spikes.items():
        assert spikes.sum() > 0, f"{name} never fires: the fixture does not test it"
        assert torch.equal(spikes, ref_spikes[name]), name
    assert_states_close(out.state, ref_state, model.config.gates)


def test_gate_neuron_by_hand():
    """Refractory withholds the input for exactly P steps, v keeps decaying; `>=` fires at equality."""
    one = torch.ones(1)
    p = GateParameters(torch.tensor(0.5), torch.tensor(0.0), one, None, None, 2, "subtract")
    state = gate_initial_state(1, 1)
    fired, membranes = [], []
    for _ in range(5):
        s, state = gate_step(2 * one[None], state, p)
        fired.append(int(s))
        membranes.append(float(state.v))
    assert fired == [1, 0, 0, 1, 0]
    assert membranes == [1.0, 0.5, 0.25, 1.125, 0.5625]
    s, _ = gate_step(one[None], gate_initial_state(1, 1), p)  # v' = 1 = threshold
    assert int(s) == 1
    zero_reset = p._replace(reset_mode="zero", refractory_period=0)
    s, state = gate_step(3 * one[None], gate_initial_state(1, 1), zero_reset)
    assert int(s) == 1 and float(state.v) == 0.0 and float(state.refractory) == 0.0


@pytest.mark.parametrize("integration,gate", VARIANTS)
def test_single_steps_equal_prefill(integration, gate):
    model = firing_model(make_config(integration, gate, pooling="learnable"), seed=2)
    toks = tokens(length=10)
    with torch.no_grad():
        full = model(toks)
        state = model.initial_state(toks.shape[0])
        for t in range(toks.shape[1]):
            step = model.step(toks[:, t], state)
            state = step.state
            assert (step.logits - full.logits[:, t]).abs().max() <= 1e-5
            for name, spikes in step.spikes.items():
                assert torch.equal(spikes, full.spikes[name][:, t])
        # a prefill then a continuation = one call
        head = model(toks[:, :6])
        tail = model(toks[:, 6:], head.state)
    assert (tail.logits - full.logits[:, 6:]).abs().max() <= 1e-5
    for mine, ref in ((state, full.state), (tail.state, full.state)):
        for a, b in zip(torch.utils._pytree.tree_leaves(mine), torch.utils._pytree.tree_leaves(ref)):
            assert (a - b).abs().max() <= 1e-5


def test_adaptive_pooling_offline_with_warning_and_refused_for_step():
    model = firing_model(make_config("pre_post", "soft", pooling="adaptive"), seed=1)
    toks = tokens()
    with pytest.warns(UserWarning, match="adaptive"), torch.no_grad():
        out = model(toks)
    ref_logits, _, _ = plain(model, toks)
    assert (out.logits - ref_logits).abs().max() <= 1e-4
    with pytest.raises(UnsupportedCapabilityError, match="adaptive"):
        model.step(toks[:, 0], model.initial_state(2))


# -- loading -------------------------------------------------------------------------------------
@pytest.fixture()
def upstream_files(tmp_path):
    model = firing_model(make_config("pre_post", "soft", pooling="learnable", biases=True), seed=4)
    weights, config = write_upstream_checkpoint(model, tmp_path)
    return model, weights, config


def test_upstream_state_dict_loads_through_the_registry(upstream_files, tmp_path):
    model, weights, config = upstream_files
    assert set(torch.load(weights, weights_only=True)) >= {"embedding.weight", "lm_head.weight"}
    loaded = load_model(weights, config)
    assert loaded.family.name == "spikemamba-lm"
    assert loaded.config == model.config
    assert any("float32 eps" in note for note in loaded.notes)
    toks = tokens()
    with torch.no_grad():
        assert torch.equal(loaded.model(toks).logits, model(toks).logits)
    assert loaded.model.lm_head.weight is loaded.model.embedding.weight
    # the own format round-trips (the tied head stored once)
    own = save_checkpoint(loaded.model, tmp_path / "own.safetensors")
    again = load_model(own)
    assert again.source_format == "neurodeploy safetensors" and again.config == model.config
    with torch.no_grad():
        assert torch.equal(again.model(toks).logits, model(toks).logits)


def test_rms_eps_option_is_used(upstream_files, tmp_path):
    model, weights, config = upstream_files
    data = json.loads(config.read_text())
    data["rms_norm_eps"] = 1e-5
    (tmp_path / "eps.json").write_text(json.dumps(data))
    loaded = load_model(weights, tmp_path / "eps.json")
    assert loaded.config.rms_norm_eps == 1e-5 and loaded.model.norm_f.eps == 1e-5
    assert not any("float32 eps" in note for note in loaded.notes)


def _save(tmp_path, sd, name="bad.pt"):
    path = tmp_path / name
    torch.save(sd, path)
    return path


@pytest.mark.parametrize("edit,message", [
    (lambda sd: sd.__setitem__("lm_head.weight", sd["lm_head.weight"] + 1), "differs from 'embedding.weight'"),
    (lambda sd: sd.pop("layers.1.spiking_mamba.mamba.D"), "missing keys: layers.1.spiking_mamba.mamba.D"),
    (lambda sd: sd.__setitem__("layers.0.extra", torch.zeros(2)), "unexpected keys: layers.0.extra"),
    (lambda sd: sd.__setitem__("layers.1.norm.weight", torch.zeros(5)), r"layers.1.norm.weight \(5,\) \(expected \(16,\)\)"),
    (lambda sd: sd["layers.0.spiking_mamba.pre_spiking.learnable_threshold"].__setitem__(0, float("nan")),
     "NaN or inf: layers.0.spiking_mamba.pre_spiking.learnable_threshold"),
    (lambda sd: sd.__setitem__("layers.0.spiking_mamba.mamba.dt_bias", torch.zeros(32)), "Mamba-2"),
])
def test_loader_names_what_is_wrong(upstream_files, tmp_path, edit, message):
    _, weights, config = upstream_files
    sd = dict(torch.load(weights, weights_only=True))
    sd = {k: v.clone() for k, v in sd.items()}
    edit(sd)
    with pytest.raises(NeurodeployError, match=message):
        load_model(_save(tmp_path, sd), config)


def test_loader_asks_for_what_the_state_dict_cannot_tell(upstream_files, tmp_path):
    _, weights, _ = upstream_files
    with pytest.raises(NeurodeployError, match="reset_mode, refractory_period") as err:
        load_model(weights)
    assert "--config" in str(err.value)
    contradicting = tmp_path / "c.json"
    contradicting.write_text(json.dumps({"reset_mode": "zero", "refractory_period": 2, "spike_integration": "pre"}))
    with pytest.raises(NeurodeployError, match="contradicts the weights: spike_integration"):
        load_model(weights, contradicting)


def test_embedding_alone_is_accepted(upstream_files, tmp_path):
    model, weights, config = upstream_files
    sd = dict(torch.load(weights, weights_only=True))
    sd.pop("lm_head.weight")
    loaded = load_model(_save(tmp_path, sd), config)
    with torch.no_grad():
        assert torch.equal(loaded.model(tokens()).logits, model(tokens()).logits)


def test_refused_configs():
    with pytest.raises(NeurodeployError, match="use_mamba2"):
        make_config().__class__(vocab_size=5, d_model=8, n_layer=1, use_mamba2=True)
    with pytest.raises(NeurodeployError, match="residual.*soft"):
        make_config("residual", "hard")
    with pytest.raises(NeurodeployError, match="unknown config field"):
        SpikeMambaLMConfig.from_dict({"vocab_size": 5, "d_model": 8, "n_layer": 1, "thresold": 1.0})
    # upstream's own names and nesting are understood
    cfg = SpikeMambaLMConfig.from_dict({"mamba_config": {"d_model": 8, "n_layer": 1, "vocab_size": 5, "dt_rank": "auto"},
                                        "spike_mode": "pre", "tau_mem": 20.0})
    assert cfg.spike_integration == "pre" and cfg.resolved_dt_rank == 1


def test_token_ids_outside_the_vocabulary_are_refused():
    model = firing_model(make_config(), seed=0)
    with pytest.raises(NeurodeployError, match="outside the model.s vocabulary"), warnings.catch_warnings():
        model(torch.tensor([[1, 37]]))
