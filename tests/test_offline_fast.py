"""The compiled offline path (model/mamba_spike/offline.py) against the plain loops and the model.

Exactness as the issue states it: spikes identical to tests/plain_reference.py's sequential
loops, logits within 1e-4, for every batch composition (padding + masks for different lengths).
"""
import pytest
import torch

from plain_reference import plain_forward, plain_frontend

from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.model.mamba_spike import offline
from neurodeploy.model.mamba_spike.offline import offline_run

SMALL = dict(conv_channels=8, spiking_channels=16, d_model=32, n_layers=2, d_state=8)


def firing_model(config: MambaSpikeConfig) -> MambaSpike:
    torch.manual_seed(0)
    model = MambaSpike(config).eval()
    with torch.no_grad():
        for conv in (model.spiking_frontend.conv1, model.spiking_frontend.conv2, model.spiking_frontend.conv3):
            conv.weight.mul_(2.5)  # every layer fires (checked below)
    return model


def frames(batch: int, steps: int, rate: float = 0.25) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.poisson(torch.full((batch, steps, 2, 34, 34), rate))


@pytest.mark.parametrize("name, config, plain_kwargs", [
    ("v1", MambaSpikeConfig(**SMALL), dict(recurrent=False, centered=True)),
    ("v2", MambaSpikeConfig(recurrent=True, beta=0.97, interface="causal", **SMALL),
     dict(recurrent=True, centered=False)),
])
@pytest.mark.parametrize("chunk_frames", [256, 12])  # 12: chunks of 3 steps carry the LIF state over
def test_spikes_identical_and_logits_close_to_plain_loops(name, config, plain_kwargs, chunk_frames, monkeypatch):
    monkeypatch.setattr(offline, "_CPU_CHUNK_FRAMES", chunk_frames)
    model = firing_model(config)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    x = frames(4, 40)
    with torch.no_grad():
        out = offline_run(model, x)
        plain_spikes = plain_frontend(sd, x, config.beta, config.threshold, recurrent=plain_kwargs["recurrent"])
        plain_logits = plain_forward(sd, x, beta=config.beta, thr=config.threshold, **plain_kwargs)
    assert all(0.01 < s.mean().item() < 0.99 for s in out.spikes), [s.mean().item() for s in out.spikes]
    assert torch.equal(out.spikes[-1], plain_spikes)
    assert (out.logits - plain_logits).abs().max().item() <= 1e-4


def test_deployable_variant_matches_the_model():
    """Sum pooling, Lava's reset (zero, immediate), causal interface: against MambaSpike.run."""
    model = firing_model(MambaSpikeConfig.deployable(**SMALL))
    x = frames(3, 30, rate=0.4)
    with torch.no_grad():
        out, ref = offline_run(model, x), model.run(x)
    assert all(torch.equal(a, b) for a, b in zip(out.spikes, ref.spikes))
    assert all(s.sum() > 0 for s in out.spikes)
    assert (out.logits - ref.logits).abs().max().item() <= 1e-4


@pytest.mark.parametrize("interface", ["centered", "causal"])
def test_variable_lengths_batched_without_cutting(interface):
    """Each padded sample gives what it gives alone: spikes zero past its end, logits of its own run."""
    config = MambaSpikeConfig(interface=interface, **SMALL)
    model = firing_model(config)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    x = frames(4, 36)
    lengths = torch.tensor([36, 17, 1, 29])
    padded = x.clone()
    for i, n in enumerate(lengths.tolist()):
        padded[i, n:] = 0
    with torch.no_grad():
        out = offline_run(model, padded, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = plain_forward(sd, x[i:i + 1, :n], beta=config.beta, thr=config.threshold,
                                  centered=interface == "centered")
            assert (out.logits[i] - alone[0]).abs().max().item() <= 1e-4
            alone_spikes = plain_frontend(sd, x[i:i + 1, :n], config.beta, config.threshold)[0]
            assert torch.equal(out.spikes[-1][i, :n], alone_spikes)
            assert all(s[i, n:].sum() == 0 for s in out.spikes)


def test_bad_lengths_and_devices_are_refused():
    model = firing_model(MambaSpikeConfig(**SMALL))
    with pytest.raises(ValueError, match="lengths"):
        offline_run(model, frames(2, 5), torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="expects"):
        offline_run(model, torch.zeros(2, 5, 2, 30, 30))


def test_fast_math_agrees_on_predictions():
    model = firing_model(MambaSpikeConfig(**SMALL))
    x = frames(4, 30)
    with torch.no_grad():
        exact, fast = offline_run(model, x), offline_run(model, x, fast_math=True)
    assert torch.equal(exact.logits.argmax(-1), fast.logits.argmax(-1))
    assert (exact.logits - fast.logits).abs().max().item() < 1e-2
