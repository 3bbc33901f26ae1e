"""The shared Mamba-layer ONNX emitter against the PyTorch block, for every variant the model
families need: conv bias, projection biases, the ungated scan with LayerNorm(d_inner) before
the gate, a time-reversed direction, and the step form. Tolerance 1e-5 (float32 throughout)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto

from neurodeploy.exporters.onnx_graph import GraphBuilder
from neurodeploy.exporters.onnx_mamba import (
    LayerNormWeights,
    MambaLayerWeights,
    MambaMixerWeights,
    emit_in_proj,
    emit_layer_sequence,
    emit_layer_step,
    emit_mixer_sequence,
    emit_out_proj,
)
from neurodeploy.model.mamba import Mamba, selective_scan

D_MODEL, D_STATE, D_CONV, LENGTH, BATCH = 12, 4, 4, 9, 2
TOL = 1e-5


def _block(conv_bias: bool, bias: bool) -> Mamba:
    torch.manual_seed(3)
    m = Mamba(D_MODEL, D_STATE, D_CONV, expand=2, conv_bias=conv_bias, bias=bias)
    with torch.no_grad():  # biases large enough to matter
        for p in m.parameters():
            if p.ndim == 1 and p is not m.D:
                p.add_(torch.randn_like(p) * 0.5)
    return m.eval()


def _session(b: GraphBuilder) -> ort.InferenceSession:
    proto = b.model("t", producer_version="test", doc="test")
    onnx.checker.check_model(proto, full_check=True)
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _assert_steps_match(w: MambaLayerWeights, d_inner: int, a: torch.Tensor, expected: torch.Tensor):
    """Step the one-token graph through `a` from zero state; every output equals `expected[:, t]`."""
    b = GraphBuilder("step", opset=20)
    a_t = b.input("a_t", TensorProto.FLOAT, ["batch", D_MODEL])
    conv = b.input("conv_state", TensorProto.FLOAT, ["batch", d_inner, D_CONV])
    ssm = b.input("ssm_state", TensorProto.FLOAT, ["batch", d_inner, D_STATE])
    out, mixed = emit_layer_step(b, w, a_t, "layer", conv_state=conv, ssm_state=ssm)
    b.output(out, "out", TensorProto.FLOAT, ["batch", D_MODEL])
    b.output(mixed.conv_state, "conv_state_out", TensorProto.FLOAT, ["batch", d_inner, D_CONV])
    b.output(mixed.ssm_state, "ssm_state_out", TensorProto.FLOAT, ["batch", d_inner, D_STATE])
    session = _session(b)
    conv_np = np.zeros((a.shape[0], d_inner, D_CONV), np.float32)
    ssm_np = np.zeros((a.shape[0], d_inner, D_STATE), np.float32)
    for t in range(a.shape[1]):
        out_t, conv_np, ssm_np = session.run(None, {"a_t": a[:, t].numpy(), "conv_state": conv_np, "ssm_state": ssm_np})
        np.testing.assert_allclose(out_t, expected[:, t].numpy(), atol=TOL)
    return conv_np, ssm_np


def _h0(b: GraphBuilder, d_inner: int) -> str:
    return b.input("h0", TensorProto.FLOAT, ["batch", d_inner, D_STATE])


@pytest.mark.parametrize("conv_bias", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_sequence_and_step_equal_the_torch_block(conv_bias, bias):
    m = _block(conv_bias, bias)
    w = MambaLayerWeights.from_module(m)
    a = torch.randn(BATCH, LENGTH, D_MODEL)
    with torch.no_grad():
        expected, state = m(a)

    b = GraphBuilder("seq", opset=20)
    x = b.input("a", TensorProto.FLOAT, ["batch", "time", D_MODEL])
    out, mixed = emit_layer_sequence(b, w, x, "layer", h0=_h0(b, m.d_inner))
    b.output(out, "out", TensorProto.FLOAT, ["batch", "time", D_MODEL])
    b.output(mixed.ssm_state, "h_last", TensorProto.FLOAT, ["batch", m.d_inner, D_STATE])
    got, h_last = _session(b).run(None, {"a": a.numpy(), "h0": np.zeros((BATCH, m.d_inner, D_STATE), np.float32)})
    np.testing.assert_allclose(got, expected.numpy(), atol=TOL)
    np.testing.assert_allclose(h_last, state.ssm_state.numpy(), atol=TOL)

    conv_np, ssm_np = _assert_steps_match(w, m.d_inner, a, expected)
    np.testing.assert_allclose(conv_np, state.conv_state.numpy(), atol=TOL)
    np.testing.assert_allclose(ssm_np, state.ssm_state.numpy(), atol=TOL)


def test_conv_bias_changes_the_output():
    """The bias must actually reach the graph (a test that cannot fail otherwise)."""
    m = _block(conv_bias=True, bias=False)
    a = torch.randn(1, LENGTH, D_MODEL)
    outputs = []
    for module in (m, _without_conv_bias(m)):
        b = GraphBuilder("seq", opset=20)
        x = b.input("a", TensorProto.FLOAT, ["batch", "time", D_MODEL])
        out, _ = emit_layer_sequence(b, MambaLayerWeights.from_module(module), x, "layer", h0=_h0(b, m.d_inner))
        b.output(out, "out", TensorProto.FLOAT, ["batch", "time", D_MODEL])
        outputs.append(_session(b).run(None, {"a": a.numpy(), "h0": np.zeros((1, m.d_inner, D_STATE), np.float32)})[0])
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3


def _without_conv_bias(m: Mamba) -> Mamba:
    clone = Mamba(D_MODEL, D_STATE, D_CONV, expand=2, conv_bias=False)
    clone.load_state_dict({k: v for k, v in m.state_dict().items() if k != "conv1d.bias"})
    return clone.eval()


def test_reversed_direction_is_flip_scan_flip():
    m = _block(conv_bias=True, bias=False)
    w = MambaLayerWeights.from_module(m)
    a = torch.randn(BATCH, LENGTH, D_MODEL)
    with torch.no_grad():
        expected = m(a.flip(1))[0].flip(1)  # in_proj and out_proj act per token
    b = GraphBuilder("rev", opset=20)
    x = b.input("a", TensorProto.FLOAT, ["batch", "time", D_MODEL])
    xi, z = emit_in_proj(b, w.projections, x, "layer")
    mixed = emit_mixer_sequence(b, w.mixer, xi, z, "layer", h0=_h0(b, m.d_inner), reverse=True)
    b.output(emit_out_proj(b, w.projections, mixed.y, "layer"), "out", TensorProto.FLOAT, ["batch", "time", D_MODEL])
    got = _session(b).run(None, {"a": a.numpy(), "h0": np.zeros((BATCH, m.d_inner, D_STATE), np.float32)})[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=TOL)


def test_ungated_scan_with_inner_layer_norm_before_the_gate():
    m = _block(conv_bias=True, bias=False)
    torch.manual_seed(5)
    norm = torch.nn.LayerNorm(m.d_inner)
    with torch.no_grad():
        norm.weight.add_(torch.randn(m.d_inner) * 0.3)
        norm.bias.add_(torch.randn(m.d_inner) * 0.3)
    a = torch.randn(BATCH, LENGTH, D_MODEL)
    with torch.no_grad():  # the liquid family's MambaL, written out
        x, z = m.in_proj(a).chunk(2, dim=-1)
        u = F.silu(F.conv1d(F.pad(x.transpose(1, 2), (D_CONV - 1, 0)), m.conv1d.weight, m.conv1d.bias,
                            groups=m.d_inner)).transpose(1, 2)
        delta, B, C = m._project(u)
        y, _ = selective_scan(u, delta, -torch.exp(m.A_log), B, C, m.D, None, m.dt_proj.bias)
        expected = m.out_proj(norm(y) * F.silu(z))
    base = MambaLayerWeights.from_module(m)
    inner = LayerNormWeights(norm.weight.detach().numpy(), norm.bias.detach().numpy(), norm.eps)
    w = MambaLayerWeights(base.projections, MambaMixerWeights(**{**base.mixer.__dict__, "inner_norm": inner}))
    b = GraphBuilder("liquid", opset=20)
    xin = b.input("a", TensorProto.FLOAT, ["batch", "time", D_MODEL])
    out, _ = emit_layer_sequence(b, w, xin, "layer", h0=_h0(b, m.d_inner))
    b.output(out, "out", TensorProto.FLOAT, ["batch", "time", D_MODEL])
    proto = b.model("t", producer_version="test", doc="test")
    assert {f.name for f in proto.functions} == {"SelectiveScanUngated"}
    got = _session(b).run(None, {"a": a.numpy(), "h0": np.zeros((BATCH, m.d_inner, D_STATE), np.float32)})[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=TOL)

    _assert_steps_match(w, m.d_inner, a, expected)
