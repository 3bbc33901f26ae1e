"""Vision Mamba -> one ONNX graph per image size: images (B, C, H, W) float32 -> logits (B, classes).

docs/vision_mamba.md, "Deployment". The graph, node by node:

    Conv(patch_embed, kernel p, stride s) -> Reshape/Transpose to (B, M, D) tokens
    cls token(s) Expand-ed to the batch and Concat-ed at their positions; + pos_embed
    per layer i: residual add, RMSNorm (plain ops) or LayerNormalization, then the bimamba v2
        mixer from the shared emitter (`exporters/onnx_mamba.py`): one in_proj, a forward
        mixer and a `reverse=True` mixer (x and z reversed with Slice step -1 before the `_b`
        conv, y reversed back), each one unchanged `ai.neurodeploy::SelectiveScan` node with
        the conv bias on the Conv; one out_proj of the sum
    residual add, norm_f, the cls row(s) / mean / last token, Gemm head (per-token head and
    ReduceMax for 'max' pooling)

`divide_out` (×0.5) and an applied `gamma` are folded into out_proj's weights and bias: ×0.5
is exact in binary floating point and gamma scales out_proj's output rows, so no extra node.
The batch is dynamic; H, W and so the token count are fixed per export (the position
embedding is not interpolated). There is no step or chunk graph: the model is non-causal
, refused through the family's capabilities.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

from neurodeploy.exporters.onnx import (
    DEFAULT_TOLERANCE,
    MIN_OPSET,
    OnnxExportError,
    OnnxExportResult,
    OnnxParityError,
    _versions,
)
from neurodeploy.exporters.onnx_functions import DOMAIN, SELECTIVE_SCAN
from neurodeploy.exporters.onnx_graph import GraphBuilder, layer_norm, linear
from neurodeploy.exporters.onnx_mamba import MambaMixerWeights, MambaProjections, emit_in_proj, emit_mixer_sequence, emit_out_proj
from neurodeploy.model.vision_mamba.config import VisionMambaConfig
from neurodeploy.model.vision_mamba.model import VisionMamba

DEFAULT_OPSET = 20
FORMAT = "neurodeploy.vision_mamba.full/1"


def _array(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy())


def _norm(b: GraphBuilder, x: str, norm: torch.nn.Module, config: VisionMambaConfig, tag: str) -> str:
    if config.norm == "layer":
        return layer_norm(b, x, _array(norm.weight), _array(norm.bias), config.norm_eps, tag)
    # RMSNorm: LayerNormalization subtracts the mean, and RMSNormalization needs opset 23
    mean_square = b.op("ReduceMean", b.op("Mul", x, x), b.ints(-1), keepdims=1, name=f"{tag}.mean_square")
    rms = b.op("Sqrt", b.op("Add", mean_square, b.scalar(float(config.norm_eps), np.float32)))
    return b.op("Mul", b.op("Div", x, rms), b.weight(f"{tag}.weight", _array(norm.weight)), name=tag)


def _projections(mixer, config: VisionMambaConfig) -> MambaProjections:
    """in_proj / out_proj, with divide_out's ×0.5 and an applied gamma folded into out_proj."""
    out_w = mixer.out_proj.weight.detach().float()
    out_b = None if mixer.out_proj.bias is None else mixer.out_proj.bias.detach().float()
    if config.divide_out:
        out_w = out_w * 0.5
    if config.layer_scale and config.gamma == "apply":
        gamma = mixer.gamma.detach().float()
        out_w = out_w * gamma[:, None]
        out_b = None if out_b is None else out_b * gamma
    return MambaProjections.from_tensors(mixer.in_proj.weight, out_w, in_proj_bias=mixer.in_proj.bias, out_proj_bias=out_b)


def _direction(mixer, suffix: str) -> MambaMixerWeights:
    conv = getattr(mixer, f"conv1d{suffix}")
    dt_proj = getattr(mixer, f"dt_proj{suffix}")
    return MambaMixerWeights.from_tensors(
        conv.weight, getattr(mixer, f"x_proj{suffix}").weight, dt_proj.weight, dt_proj.bias,
        getattr(mixer, f"A{suffix}_log").float(), getattr(mixer, f"D{suffix}"), conv1d_bias=conv.bias,
    )


def _tokens(b: GraphBuilder, model: VisionMamba, images: str) -> str:
    c = model.config
    proj = model.patch_embed.proj
    grid = b.op("Conv", images, b.weight("patch_embed.proj.weight", _array(proj.weight)),
                b.weight("patch_embed.proj.bias", _array(proj.bias)), kernel_shape=[c.patch_size] * 2,
                strides=[c.stride] * 2, name="patch_embed")  # (B, D, G, G)
    x = b.op("Transpose", b.op("Reshape", grid, b.ints(0, c.embed_dim, -1)), perm=[0, 2, 1])  # (B, M, D)
    if c.cls_position != "none":
        batch_shape = b.op("Concat", b.op("Shape", x, start=0, end=1), b.ints(1, c.embed_dim), axis=0)

        def cls(name: str) -> str:
            return b.op("Expand", b.weight(name, _array(getattr(model, name))), batch_shape)

        if c.cls_position == "double":
            x = b.op("Concat", cls("cls_token_head"), x, cls("cls_token_tail"), axis=1)
        elif c.cls_position == "head":
            x = b.op("Concat", cls("cls_token"), x, axis=1)
        else:
            at = c.cls_index[0]
            before = b.op("Slice", x, b.ints(0), b.ints(at), b.ints(1))
            after = b.op("Slice", x, b.ints(at), b.ints(c.num_patches), b.ints(1))
            x = b.op("Concat", before, cls("cls_token"), after, axis=1)
    if c.pos_embed:
        x = b.op("Add", x, b.weight("pos_embed", _array(model.pos_embed)))
    return x


def _pool_and_head(b: GraphBuilder, model: VisionMamba, states: str) -> str:
    c = model.config
    head_w, head_b = _array(model.head.weight), _array(model.head.bias)
    if c.cls_position == "none" and c.final_pool_type == "max":
        per_token = linear(b, states, np.ascontiguousarray(head_w.T), head_b, "head")
        return b.op("ReduceMax", per_token, b.ints(1), keepdims=0, name="max_over_tokens")
    if c.cls_position == "double":
        pair = b.op("Gather", states, b.ints(*c.cls_index), axis=1)
        features = b.op("ReduceMean", pair, b.ints(1), keepdims=0, name="mean_of_cls_tokens")
    elif c.cls_position != "none":
        features = b.op("Gather", states, b.scalar(c.cls_index[0], np.int64), axis=1, name="cls_token_row")
    elif c.final_pool_type == "mean":
        features = b.op("ReduceMean", states, b.ints(1), keepdims=0, name="mean_over_tokens")
    else:
        features = b.op("Gather", states, b.scalar(c.num_tokens - 1, np.int64), axis=1, name="last_token")
    return b.op("Gemm", features, b.weight("head.weight", head_w), b.weight("head.bias", head_b), transB=1, name="head")


def build_vision_mamba_model(model: VisionMamba, *, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The whole-image graph in memory, unchecked."""
    if not isinstance(model, VisionMamba):
        raise OnnxExportError(f"expected a neurodeploy VisionMamba, got {type(model).__name__}; load the checkpoint "
                              "with neurodeploy.model.registry.load_model first")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise OnnxExportError(f"opset {opset!r}; the Vision Mamba graph needs ONNX opset {MIN_OPSET} or newer")
    for name, tensor in model.state_dict().items():
        if not torch.isfinite(tensor).all():
            raise OnnxExportError(f"weight {name!r} holds NaN or inf; the checkpoint is damaged")
    c = model.config
    b = GraphBuilder("vision_mamba", opset=opset)
    images = b.input("images", TensorProto.FLOAT, ["batch", c.in_chans, c.img_size, c.img_size])
    hidden = _tokens(b, model, images)
    h0_shape = b.op("Concat", b.op("Shape", hidden, start=0, end=1), b.ints(c.d_inner, c.d_state), axis=0)
    h0 = b.op("ConstantOfShape", h0_shape, value=numpy_helper.from_array(np.zeros(1, np.float32)))
    residual = None
    for i, layer in enumerate(model.layers):
        tag = f"layers.{i}"
        residual = hidden if residual is None else b.op("Add", residual, hidden)
        normed = _norm(b, residual, layer.norm, c, f"{tag}.norm")
        projections = _projections(layer.mixer, c)
        x, z = emit_in_proj(b, projections, normed, f"{tag}.mixer")
        forward = emit_mixer_sequence(b, _direction(layer.mixer, ""), x, z, f"{tag}.mixer", h0=h0)
        backward = emit_mixer_sequence(b, _direction(layer.mixer, "_b"), x, z, f"{tag}.mixer_b", h0=h0, reverse=True)
        hidden = emit_out_proj(b, projections, b.op("Add", forward.y, backward.y), f"{tag}.mixer")
    states = _norm(b, b.op("Add", residual, hidden), model.norm_f, c, "norm_f")
    b.output(_pool_and_head(b, model, states), "logits", TensorProto.FLOAT, ["batch", c.num_classes])
    versions = _versions()
    metadata = {
        "neurodeploy.format": FORMAT,
        "neurodeploy.graph": "full",
        "neurodeploy.family": "vision-mamba",
        "neurodeploy.model_config": c.to_json(),
        "neurodeploy.opset": str(opset),
        "neurodeploy.custom_op": SELECTIVE_SCAN,
        "neurodeploy.versions": json.dumps(versions, sort_keys=True),
    }
    return b.model("neurodeploy_vision_mamba", producer_version=versions["neurodeploy"],
                   doc=f"Vision Mamba {c.img_size} px (see neurodeploy.exporters.onnx_vision_mamba)", metadata=metadata)


def default_sample(config: VisionMambaConfig, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, config.in_chans, config.img_size, config.img_size, generator=gen)


def export_vision_mamba(model: VisionMamba, path: str | Path, *, opset: int = DEFAULT_OPSET,
                        sample: torch.Tensor | None = None, tolerance: float = DEFAULT_TOLERANCE) -> OnnxExportResult:
    """Write the graph and check it in a bare onnxruntime session (no custom-op library)
    against the PyTorch model on `sample` (default: 2 seeded random images)."""
    import onnxruntime

    path = Path(path)
    start = time.perf_counter()
    proto = build_vision_mamba_model(model, opset=opset)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    export_seconds = time.perf_counter() - start
    onnx.checker.check_model(str(path), full_check=True)
    c = model.config
    sample = default_sample(c) if sample is None else sample.detach().to(torch.float32).cpu()
    if tuple(sample.shape[1:]) != (c.in_chans, c.img_size, c.img_size):
        raise OnnxExportError(f"validation sample of shape {tuple(sample.shape)}; expected (B, {c.in_chans}, "
                              f"{c.img_size}, {c.img_size})")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": sample.numpy()})
    with torch.no_grad():
        expected = model(sample).numpy()
    worst = float(np.abs(logits.astype(np.float64) - expected).max())
    if not worst <= tolerance:  # also catches NaN
        raise OnnxParityError(f"{path}: onnxruntime differs from PyTorch by {worst:.3g} (tolerance {tolerance:g}) on "
                              f"{tuple(sample.shape)} images; the graph is not a faithful export")
    return OnnxExportResult(
        path=path, graph="full", opset=opset,
        inputs=tuple(i.name for i in proto.graph.input), outputs=tuple(o.name for o in proto.graph.output),
        nodes=len(proto.graph.node), custom_nodes=sum(1 for n in proto.graph.node if n.domain == DOMAIN),
        size_bytes=path.stat().st_size, export_seconds=export_seconds, parity_max_abs=worst,
        parity_sample=(int(sample.shape[0]), c.num_tokens), tolerance=tolerance,
    )
