"""The ai.neurodeploy custom ops as ONNX functions (FunctionProto) with standard-ONNX bodies.

    ai.neurodeploy::SelectiveScan(u, delta, A, B, C, D, z, delta_bias, h0) -> (y, h_last)
        u, delta, z (B, L, d_inner); B, C (B, L, d_state); A (d_inner, d_state); D,
        delta_bias (d_inner); h0, h_last (B, d_inner, d_state); y (B, L, d_inner).
    ai.neurodeploy::SelectiveStateUpdate(ssm_state, u, delta, A, B, C, D, z, delta_bias)
        -> (y, ssm_state_out)
        the same maths for one step: u, delta, z (B, d_inner); B, C (B, d_state).

    ai.neurodeploy::SelectiveScanUngated(u, delta, A, B, C, D, delta_bias, h0) -> (y, h_last)
    ai.neurodeploy::SelectiveStateUpdateUngated(ssm_state, u, delta, A, B, C, D, delta_bias)
        -> (y, ssm_state_out)
        the same without the gate: y = <h, C> + D * u. For Mamba variants that put something
        between the scan and the gate (the liquid family's LayerNorm(d_inner) before
        * silu(z)); the graph applies that and the gate outside. Sibling functions rather than
        an optional `z` input, because a FunctionProto body cannot branch on an absent input.

Inputs and maths are those of `neurodeploy.model.mamba.selective_scan` /
`selective_state_update` (and of the official kernels' signatures): `delta` is the
pre-softplus projection, `A = -exp(A_log)`, and `y` of the gated ops comes out already gated
by silu(z). The specification is docs/custom_ops.md.

A model carrying these functions runs in stock onnxruntime (it inlines the bodies at load),
while a runtime with a fused kernel can claim the node by domain and name. The bodies are
float32 only (the Scan body declares its types), and their opset import is the model's.
"""
from __future__ import annotations

from onnx import FunctionProto, TensorProto, helper

DOMAIN = "ai.neurodeploy"
DOMAIN_VERSION = 1
SELECTIVE_SCAN = "SelectiveScan"
SELECTIVE_STATE_UPDATE = "SelectiveStateUpdate"
SELECTIVE_SCAN_UNGATED = "SelectiveScanUngated"
SELECTIVE_STATE_UPDATE_UNGATED = "SelectiveStateUpdateUngated"
SCAN_INPUTS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0")
SCAN_OUTPUTS = ("y", "h_last")
STATE_UPDATE_INPUTS = ("ssm_state", "u", "delta", "A", "B", "C", "D", "z", "delta_bias")
STATE_UPDATE_OUTPUTS = ("y", "ssm_state_out")


def _ints(name: str, values: list[int]):
    return helper.make_node("Constant", [], [name], value_ints=values)


def _gate(u: str, D: str, z: str | None, y_ssm: str, out: str) -> list:
    """y = (y_ssm + D * u) * silu(z), or without the gate when `z` is None; ONNX before
    opset 24 has no SiLU, so x * sigmoid(x)."""
    if z is None:
        return [helper.make_node("Mul", [u, D], ["Du"]), helper.make_node("Add", [y_ssm, "Du"], [out])]
    return [
        helper.make_node("Mul", [u, D], ["Du"]),
        helper.make_node("Add", [y_ssm, "Du"], ["y_skip"]),
        helper.make_node("Sigmoid", [z], ["z_sigmoid"]),
        helper.make_node("Mul", [z, "z_sigmoid"], ["z_silu"]),
        helper.make_node("Mul", ["y_skip", "z_silu"], [out]),
    ]


def _without_z(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n != "z"]


def selective_scan_function(opset: int, *, gated: bool = True) -> FunctionProto:
    """The full-sequence scan (`gated=False`: SelectiveScanUngated). The exponentials and input terms of every step are computed in
    one vectorised call, born time-major; only `h = dA_t * h + dBu_t` and `y_t = h @ C_t`
    step through time in a Scan over axis 0."""
    body = helper.make_graph(
        [
            helper.make_node("Mul", ["dA_t", "h_prev"], ["h_decayed"]),
            helper.make_node("Add", ["h_decayed", "dBu_t"], ["h_next"]),
            helper.make_node("MatMul", ["h_next", "C_t"], ["y_t"]),  # (B, d_inner, 1)
        ],
        "selective_scan_step",
        [
            helper.make_tensor_value_info("h_prev", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("dA_t", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("dBu_t", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("C_t", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("h_next", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("y_t", TensorProto.FLOAT, None),
        ],
    )
    time_major = [1, 0, 2]
    nodes = [
        _ints("axis_last", [-1]),
        _ints("axis_2", [2]),
        helper.make_node("Add", ["delta", "delta_bias"], ["delta_biased"]),
        helper.make_node("Softplus", ["delta_biased"], ["dt"]),
        helper.make_node("Transpose", ["dt"], ["dt_tm"], perm=time_major),
        helper.make_node("Transpose", ["u"], ["u_tm"], perm=time_major),
        helper.make_node("Transpose", ["B"], ["B_tm"], perm=time_major),
        helper.make_node("Transpose", ["C"], ["C_tm"], perm=time_major),
        helper.make_node("Unsqueeze", ["dt_tm", "axis_last"], ["dt_col"]),
        helper.make_node("Mul", ["dt_col", "A"], ["dtA"]),
        helper.make_node("Exp", ["dtA"], ["dA"]),  # (L, B, d_inner, d_state)
        helper.make_node("Mul", ["dt_tm", "u_tm"], ["dt_u"]),
        helper.make_node("Unsqueeze", ["dt_u", "axis_last"], ["dt_u_col"]),
        helper.make_node("Unsqueeze", ["B_tm", "axis_2"], ["B_row"]),
        helper.make_node("Mul", ["dt_u_col", "B_row"], ["dBu"]),  # (L, B, d_inner, d_state)
        helper.make_node("Unsqueeze", ["C_tm", "axis_last"], ["C_col"]),  # (L, B, d_state, 1)
        helper.make_node("Scan", ["h0", "dA", "dBu", "C_col"], ["h_last", "y_col"], body=body, num_scan_inputs=3),
        helper.make_node("Squeeze", ["y_col", "axis_last"], ["y_tm"]),
        helper.make_node("Transpose", ["y_tm"], ["y_ssm"], perm=time_major),
        *_gate("u", "D", "z" if gated else None, "y_ssm", "y"),
    ]
    return helper.make_function(
        DOMAIN, SELECTIVE_SCAN if gated else SELECTIVE_SCAN_UNGATED,
        list(SCAN_INPUTS) if gated else _without_z(SCAN_INPUTS), list(SCAN_OUTPUTS), nodes,
        opset_imports=[helper.make_opsetid("", opset)],
        doc_string="Mamba selective scan; see neurodeploy.model.mamba.selective_scan",
    )


def selective_state_update_function(opset: int, *, gated: bool = True) -> FunctionProto:
    """One step of the scan, for the step graph: no Scan, a handful of elementwise ops
    (`gated=False`: SelectiveStateUpdateUngated)."""
    nodes = [
        _ints("axis_last", [-1]),
        _ints("axis_1", [1]),
        helper.make_node("Add", ["delta", "delta_bias"], ["delta_biased"]),
        helper.make_node("Softplus", ["delta_biased"], ["dt"]),
        helper.make_node("Unsqueeze", ["dt", "axis_last"], ["dt_col"]),
        helper.make_node("Mul", ["dt_col", "A"], ["dtA"]),
        helper.make_node("Exp", ["dtA"], ["dA"]),
        helper.make_node("Mul", ["dt", "u"], ["dt_u"]),
        helper.make_node("Unsqueeze", ["dt_u", "axis_last"], ["dt_u_col"]),
        helper.make_node("Unsqueeze", ["B", "axis_1"], ["B_row"]),
        helper.make_node("Mul", ["dt_u_col", "B_row"], ["dBu"]),
        helper.make_node("Mul", ["ssm_state", "dA"], ["h_decayed"]),
        helper.make_node("Add", ["h_decayed", "dBu"], ["ssm_state_out"]),
        helper.make_node("Unsqueeze", ["C", "axis_last"], ["C_col"]),
        helper.make_node("MatMul", ["ssm_state_out", "C_col"], ["y_col"]),
        helper.make_node("Squeeze", ["y_col", "axis_last"], ["y_ssm"]),
        *_gate("u", "D", "z" if gated else None, "y_ssm", "y"),
    ]
    return helper.make_function(
        DOMAIN, SELECTIVE_STATE_UPDATE if gated else SELECTIVE_STATE_UPDATE_UNGATED,
        list(STATE_UPDATE_INPUTS) if gated else _without_z(STATE_UPDATE_INPUTS), list(STATE_UPDATE_OUTPUTS), nodes,
        opset_imports=[helper.make_opsetid("", opset)],
        doc_string="One step of the Mamba selective scan; see neurodeploy.model.mamba.selective_state_update",
    )
