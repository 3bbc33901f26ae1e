"""The native runtimes against the torch reference: identical spikes, logits within 1e-5.

Front-end: every exportable variant (sum / avg pooling x recurrence x reset subtract / zero /
none x delayed / immediate), spike for spike at every layer and step, on graded Poisson
counts where every layer fires. Backbone: streamed anytime logits, flushed logits, state
hand-over in both directions, causal and centred interfaces. The generic Mamba layer step
with biases and the two gate-less variants against a plain torch transcription of
FAMILIES.md §0. The shipped model on the shipped recording.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurodeploy.exporters.nir import export_frontend
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.model.mamba import Mamba
from neurodeploy.runtimes.contract import BackboneRuntime, FrontendRuntime
from neurodeploy.runtimes.native import (MambaLayerWeights, NativeBackboneRuntime, NativeFrontendRuntime,
                                         mamba_layer_step)
from neurodeploy.formats.nir_frontend import UnsupportedGraphError
from neurodeploy.runtimes.torch import TorchBackboneRuntime, TorchFrontendRuntime

SMALL = dict(input_height=16, input_width=16, conv_channels=8, spiking_channels=8, d_model=16, n_layers=2, d_state=4)
BATCH, STEPS = 2, 24
FRONTEND_VARIANTS = list(itertools.product(["sum", "avg"], [False, True], ["subtract", "zero", "none"],
                                           ["delayed", "immediate"]))
LOGIT_TOLERANCE = 1e-5


def frames(rate: float = 0.3, seed: int = 1, steps: int = STEPS) -> torch.Tensor:
    return torch.poisson(torch.full((BATCH, steps, 2, 16, 16), rate), generator=torch.Generator().manual_seed(seed))


def model(**config) -> MambaSpike:
    torch.manual_seed(0)
    m = MambaSpike(MambaSpikeConfig(**{**SMALL, **config})).eval()
    with torch.no_grad():
        scale = 3.0 if config.get("pooling") == "avg" else 1.5
        m.spiking_frontend.conv2.weight.mul_(scale)
        m.spiking_frontend.conv3.weight.mul_(scale)
    return m


@pytest.mark.parametrize("pooling,recurrent,reset,timing", FRONTEND_VARIANTS)
def test_native_frontend_spikes_equal_torch_at_every_step_and_layer(pooling, recurrent, reset, timing):
    m = model(pooling=pooling, recurrent=recurrent, reset=reset, reset_timing=timing, beta=0.93)
    runtime, reference = NativeFrontendRuntime(export_frontend(m, 1e-3)), TorchFrontendRuntime(m)
    assert isinstance(runtime, FrontendRuntime)
    x = frames()
    runtime.reset(BATCH)
    reference.reset(BATCH)
    for t in range(STEPS):
        out, expected = runtime.step(x[:, t]), reference.step(x[:, t])
        assert torch.equal(out, expected), f"step {t}: last-layer spikes differ"
        got = runtime.layer_spikes
        for name in reference.layer_names:
            assert torch.equal(got[name], reference.layer_spikes[name]), f"step {t}, {name}"
    counts = reference.spike_counts
    assert runtime.spike_counts == counts
    neurons = {n: STEPS * s.numel() for n, s in reference.layer_spikes.items()}
    assert all(0 < counts[n] < neurons[n] for n in counts), counts  # fires, not saturated
    offline, _ = m.spiking_frontend(x)
    assert torch.equal(runtime.run(x), offline[-1])


def test_native_frontend_recurrence_is_inactive_at_the_first_step_and_reset_restarts():
    m = model(pooling="sum", recurrent=True, reset="zero", reset_timing="immediate")
    with torch.no_grad():
        for k in (1, 2, 3):
            getattr(m.spiking_frontend, f"recurrent{k}").bias.fill_(5.0)
    runtime, reference = NativeFrontendRuntime(export_frontend(m, 1e-3)), TorchFrontendRuntime(m)
    x = frames()
    first = runtime.run(x)
    assert torch.equal(first, reference.run(x))
    assert torch.equal(runtime.run(x), first)


def test_native_frontend_refuses_what_it_cannot_run():
    graph = export_frontend(model(pooling="sum"), 1e-3)
    graph.nodes["conv2"].groups = 2
    with pytest.raises(UnsupportedGraphError, match="conv2"):
        NativeFrontendRuntime(graph)


# -- backbone -------------------------------------------------------------------------------
def spike_input(config: MambaSpikeConfig, steps: int, seed: int = 2) -> torch.Tensor:
    shape = (BATCH, steps, config.spiking_channels, config.feature_height, config.feature_width)
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.1).float()


@pytest.mark.parametrize("interface,window", [("causal", 5), ("centered", 5), ("centered", 4), ("causal", 1)])
def test_native_backbone_logits_match_torch(interface, window):
    m = model(pooling="sum", interface=interface, interface_window=window)
    spikes = spike_input(m.config, 30)
    native, reference = NativeBackboneRuntime(m), TorchBackboneRuntime(m)
    assert isinstance(native, BackboneRuntime)
    native.reset(BATCH)
    reference.reset(BATCH)
    for t in range(spikes.shape[1]):
        got, want = native.step(spikes[:, t]), reference.step(spikes[:, t])
        assert float((got - want).abs().max()) <= LOGIT_TOLERANCE, t
        if t == 12:  # hand the stream over, both ways, mid-sample
            reference.set_state(native.get_state())
            native.set_state(reference.get_state())
    final = native.flush()
    assert float((final - reference.flush()).abs().max()) <= LOGIT_TOLERANCE
    with torch.no_grad():
        offline = m.backbone_forward(spikes)
    assert float((final - offline).abs().max()) <= LOGIT_TOLERANCE
    assert float((native.run(spikes) - offline).abs().max()) <= LOGIT_TOLERANCE


def plain_mamba_step(w: dict[str, torch.Tensor], conv_state, ssm_state, x, gate: str):
    """FAMILIES.md §0 steps 1-8 for one token, in float64, written out for this test."""
    xz = w["in_w"] @ x + w["in_b"]
    d_inner = w["A"].shape[0]
    xi, z = xz[:d_inner], xz[d_inner:]
    conv_state = torch.cat([conv_state[:, 1:], xi[:, None]], dim=1)
    u = F.silu((conv_state * w["conv_w"]).sum(-1) + w["conv_b"])
    rho, B, C = torch.split(w["x_w"] @ u, [w["dt_w"].shape[1], w["A"].shape[1], w["A"].shape[1]])
    delta = F.softplus(w["dt_w"] @ rho + w["dt_b"])
    ssm_state = torch.exp(delta[:, None] * w["A"]) * ssm_state + (delta * u)[:, None] * B[None, :]
    y = ssm_state @ C + w["D"] * u
    if gate == "silu":
        y = y * F.silu(z)
    elif gate == "norm_silu":
        y = F.layer_norm(y, (d_inner,), w["gn_w"], w["gn_b"], 1e-5) * F.silu(z)
    return w["out_w"] @ y + w["out_b"], conv_state, ssm_state


@pytest.mark.parametrize("gate", ["silu", "none", "norm_silu"])
def test_mamba_layer_step_with_biases_and_gates_matches_a_plain_transcription(gate):
    torch.manual_seed(3)
    layer = Mamba(24, d_state=6, d_conv=3, expand=2)
    g = torch.Generator().manual_seed(4)
    d_inner = layer.d_inner
    extra = {"in_b": torch.randn(2 * d_inner, generator=g) * 0.1, "conv_b": torch.randn(d_inner, generator=g) * 0.1,
             "out_b": torch.randn(24, generator=g) * 0.1, "gn_w": 1 + 0.1 * torch.randn(d_inner, generator=g),
             "gn_b": 0.1 * torch.randn(d_inner, generator=g)}
    base = MambaLayerWeights.from_module(layer)
    weights = MambaLayerWeights(
        **{**base.__dict__, "in_proj_bias": extra["in_b"].numpy(), "conv_bias": extra["conv_b"].numpy(),
           "out_proj_bias": extra["out_b"].numpy(), "gate": gate,
           "gate_norm_weight": extra["gn_w"].numpy(), "gate_norm_bias": extra["gn_b"].numpy()})
    w = {"in_w": layer.in_proj.weight, "conv_w": layer.conv1d.weight[:, 0], "x_w": layer.x_proj.weight,
         "dt_w": layer.dt_proj.weight, "dt_b": layer.dt_proj.bias, "A": -torch.exp(layer.A_log), "D": layer.D,
         "out_w": layer.out_proj.weight, **extra}
    w = {k: v.detach().double() for k, v in w.items()}
    conv_state = np.zeros((2, d_inner, 3), np.float32)
    ssm_state = np.zeros((2, d_inner, 6), np.float32)
    ref_conv, ref_ssm = torch.zeros(2, d_inner, 3, dtype=torch.float64), torch.zeros(2, d_inner, 6, dtype=torch.float64)
    for t in range(12):
        x = torch.randn(2, 24, generator=g)
        y = mamba_layer_step(weights, conv_state, ssm_state, x.numpy())
        for b in range(2):
            want, ref_conv[b], ref_ssm[b] = plain_mamba_step(w, ref_conv[b], ref_ssm[b], x[b].double(), gate)
            assert np.abs(y[b] - want.numpy()).max() <= 1e-5, (t, b)
    assert np.abs(ssm_state - ref_ssm.numpy()).max() <= 1e-5


def test_mamba_layer_step_equals_the_model_step_without_biases():
    torch.manual_seed(5)
    layer = Mamba(32)
    state = layer.initial_state(1)
    conv_state, ssm_state = np.zeros((32 * 2, 4), np.float32), np.zeros((64, 16), np.float32)
    weights = MambaLayerWeights.from_module(layer)
    for _ in range(8):
        x = torch.randn(1, 32)
        with torch.no_grad():
            want, state = layer.step(x, state)
        got = mamba_layer_step(weights, conv_state, ssm_state, x[0].numpy())
        assert np.abs(got - want[0].numpy()).max() <= 1e-5
    assert np.abs(ssm_state - state.ssm_state[0].numpy()).max() <= 1e-5


def test_mamba_layer_step_reads_the_biases_of_a_module_built_with_them():
    torch.manual_seed(6)
    layer = Mamba(24, d_state=8, conv_bias=True, bias=True)
    with torch.no_grad():
        layer.in_proj.bias.normal_(0, 0.1)
        layer.out_proj.bias.normal_(0, 0.1)
    state = layer.initial_state(2)
    conv_state, ssm_state = np.zeros((2, 48, 4), np.float32), np.zeros((2, 48, 8), np.float32)
    weights = MambaLayerWeights.from_module(layer)
    assert weights.conv_bias is not None and weights.in_proj_bias is not None and weights.out_proj_bias is not None
    for _ in range(6):
        x = torch.randn(2, 24)
        with torch.no_grad():
            want, state = layer.step(x, state)
        assert np.abs(mamba_layer_step(weights, conv_state, ssm_state, x.numpy()) - want.numpy()).max() <= 1e-5
