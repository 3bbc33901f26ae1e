"""Vision Mamba on one CPU thread: the PyTorch model vs the ONNX graph in onnxruntime.

    python benchmarks/vision_mamba.py                      # vim_tiny (D 192, 24 layers) at 160 px, 101 tokens
    python benchmarks/vision_mamba.py --img 224            # 224 px, 197 tokens
    python benchmarks/vision_mamba.py --checkpoint CKPT    # a real checkpoint instead of seeded weights

One process, one thread everywhere (torch.set_num_threads(1); onnxruntime intra/inter-op 1,
sequential), batch 1, the median of --repeats images after a warm-up. The baseline is the
PyTorch model of this toolkit (`neurodeploy.model.vision_mamba`, whose scan is the vectorised
`neurodeploy.model.mamba.selective_scan`), measured in the same run; the figure that counts is
the ratio. Beside it, the dense-FLOP bound: the model's dense MACs (the `report` count) at
the single-thread matmul rate measured here, i.e. the time if every op ran at GEMM speed; and
the exponential floor: the 2 x depth x tokens x d_inner x d_state values exp(delta * A) every
runtime computes, at torch.exp's vectorised rate measured here.

The native runtime's one-token numba Mamba kernel (`neurodeploy.runtimes.native.mamba_layer_step`)
is timed applied to both directions (see `_native_forward`; patch embedding, norms and head in
torch). Seeded weights follow the
official initialisation (A = 1..N, dt in [1e-3, 0.1]): speed does not depend on the values,
but denormals or overflow would, so the weights are realistic. Note the load (uptime) beside
the figures: the machines are shared.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurodeploy.exporters.onnx_vision_mamba import export_vision_mamba
from neurodeploy.model.registry import load_model
from neurodeploy.model.vision_mamba import VisionMamba, VisionMambaConfig
from neurodeploy.report.vision_mamba import vision_mamba_report


def _seeded_checkpoint(config: VisionMambaConfig, path: Path) -> Path:
    torch.manual_seed(0)
    model = VisionMamba(config)
    with torch.no_grad():
        for layer in model.layers:
            m = layer.mixer
            for suffix in ("", "_b"):
                getattr(m, f"A{suffix}_log").copy_(torch.log(torch.arange(1, config.d_state + 1.0)).repeat(config.d_inner, 1))
                dt = torch.exp(torch.rand(config.d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
                getattr(m, f"dt_proj{suffix}").bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        for name in ("cls_token", "pos_embed"):
            if hasattr(model, name):
                getattr(model, name).normal_(0, 0.02)
    torch.save({"model": model.state_dict()}, path)
    return path


def _median_ms(fn, repeats: int) -> float:
    return _interleaved_ms({"f": fn}, repeats)["f"]


def _interleaved_ms(fns: dict, repeats: int) -> dict[str, float]:
    """Median ms per call of each function, timed in turns (one call of each per round) so that a
    change of load on the shared machine falls on every runtime alike; two warm-up rounds."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 2):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_ >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def _gemm_gflops() -> float:
    """Single-thread float32 matmul rate at the model's shapes (tokens x 192 @ 192 x 768) and a square one."""
    rates = []
    for m, k, n in ((101, 192, 768), (512, 512, 512)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        ms = _median_ms(lambda: torch.mm(a, b), 20)
        rates.append(2 * m * k * n / (ms * 1e-3) / 1e9)
    return max(rates)


def _exp_per_second(config: VisionMambaConfig) -> float:
    """Single-thread rate of torch.exp over one direction's (tokens, d_inner, d_state) tensor."""
    values = -torch.rand(config.num_tokens, config.d_inner, config.d_state)
    ms = _median_ms(lambda: torch.exp(values), 20)
    return values.numel() / (ms * 1e-3)


def _native_forward(model: VisionMamba):
    """The model with each layer's mixer on the native runtime's one-token Mamba kernel
    (`neurodeploy.runtimes.native.mamba_layer_step`), applied to both directions: tokens 0..L-1
    through the forward weights, L-1..0 through the `_b` weights, sharing in_proj and out_proj
    (out_proj is linear: out_proj(y_f) + out_proj(y_b) = out_proj(y_f + y_b); its bias added once,
    divide_out's 0.5 and an applied gamma folded into its weight). Patch embedding, norms and
    head stay in torch. Batch 1."""
    from neurodeploy.runtimes.native import MambaLayerWeights, mamba_layer_step

    c = model.config
    if c.cls_position == "none" and c.final_pool_type == "max":
        raise ValueError("max pooling is not wired into this benchmark's native path")
    layers = []
    for layer in model.layers:
        m = layer.mixer
        out_w = m.out_proj.weight.detach().float() * (0.5 if c.divide_out else 1.0)
        out_b = None if m.out_proj.bias is None else m.out_proj.bias.detach().float()
        if c.layer_scale and c.gamma == "apply":
            out_w, out_b = out_w * m.gamma[:, None], None if out_b is None else out_b * m.gamma
        directions = []
        for suffix in ("", "_b"):
            conv, dt_proj = getattr(m, f"conv1d{suffix}"), getattr(m, f"dt_proj{suffix}")
            f32 = lambda t: np.ascontiguousarray(t.detach().float().numpy())  # noqa: E731
            directions.append(MambaLayerWeights(
                in_proj_weight=f32(m.in_proj.weight), conv_weight=f32(conv.weight[:, 0, :]),
                x_proj_weight=f32(getattr(m, f"x_proj{suffix}").weight), dt_proj_weight=f32(dt_proj.weight),
                dt_proj_bias=f32(dt_proj.bias), A=f32(-torch.exp(getattr(m, f"A{suffix}_log").float())),
                D=f32(getattr(m, f"D{suffix}")), out_proj_weight=f32(out_w),
                in_proj_bias=None if m.in_proj.bias is None else f32(m.in_proj.bias),
                conv_bias=None if conv.bias is None else f32(conv.bias)))
        layers.append((layer.norm, directions, None if out_b is None else out_b.numpy()))

    def forward(images: torch.Tensor) -> torch.Tensor:
        hidden, residual = model.tokens(images), None
        for norm, (forward_w, backward_w), out_b in layers:
            residual = hidden if residual is None else residual + hidden
            normed = norm(residual)[0].numpy()
            length = normed.shape[0]
            mixed = np.empty((length, c.embed_dim), np.float32)
            for weights, order, accumulate in ((forward_w, range(length), False),
                                               (backward_w, range(length - 1, -1, -1), True)):
                conv_state = np.zeros((c.d_inner, c.d_conv), np.float32)
                ssm_state = np.zeros((c.d_inner, c.d_state), np.float32)
                for t in order:
                    y = mamba_layer_step(weights, conv_state, ssm_state, normed[t])
                    mixed[t] = mixed[t] + y if accumulate else y
            if out_b is not None:
                mixed += out_b
            hidden = torch.from_numpy(mixed)[None]
        states = model.norm_f(residual + hidden)
        if c.cls_position == "double":
            features = (states[:, c.cls_index[0]] + states[:, c.cls_index[1]]) / 2
        elif c.cls_position != "none":
            features = states[:, c.cls_index[0]]
        else:
            features = states.mean(dim=1) if c.final_pool_type == "mean" else states[:, -1]
        return model.head(features)

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img", type=int, default=160, help="image size (160: the upstream CPU benchmark's 101 tokens)")
    parser.add_argument("--embed", type=int, default=192)
    parser.add_argument("--depth", type=int, default=24)
    parser.add_argument("--checkpoint", type=Path, default=None, help="a Vision Mamba checkpoint (default: seeded vim_tiny)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    torch.set_num_threads(1)
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.checkpoint is None:
            config = VisionMambaConfig(img_size=args.img, embed_dim=args.embed, depth=args.depth, d_inner=2 * args.embed,
                                       dt_rank=math.ceil(args.embed / 16), norm="rms")
            checkpoint = _seeded_checkpoint(config, tmp / "vim.pth")
            loaded = load_model(checkpoint, {"img_size": args.img})
        else:
            loaded = load_model(args.checkpoint, {"img_size": args.img})
        c = loaded.config
        model = loaded.model
        export = export_vision_mamba(model, tmp / "vim.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(export.path), options, providers=["CPUExecutionProvider"])

        image = torch.randn(1, c.in_chans, c.img_size, c.img_size, generator=torch.Generator().manual_seed(1))
        feed = {"images": image.numpy()}
        def run_torch():
            with torch.inference_mode():
                return model(image)

        reference = run_torch().numpy()
        runs = {"torch": run_torch, "onnx": lambda: session.run(None, feed)}
        native_note = ""
        try:
            native = _native_forward(model)
        except ImportError as err:  # numba missing: the native runtime is optional here
            native, native_note = None, f"not available ({err})"
        except ValueError as err:
            native, native_note = None, str(err)
        if native is not None:
            def run_native():
                with torch.inference_mode():
                    return native(image)

            native_logits = run_native().numpy()
            runs["native"] = run_native
        timed = _interleaved_ms(runs, args.repeats)
        torch_ms, onnx_ms = timed["torch"], timed["onnx"]
        (onnx_logits,) = session.run(None, feed)
        gflops = _gemm_gflops()
        report = vision_mamba_report(loaded)
        bound_ms = 2 * report.macs_per_image / (gflops * 1e9) * 1e3
        # exp(delta * A) for every token, channel and state of both directions: a floor that the
        # MAC count does not show (every runtime computes these exponentials)
        exps = 2 * c.depth * c.num_tokens * c.d_inner * c.d_state
        exp_ms = exps / _exp_per_second(c) * 1e3

        print(f"Vision Mamba D {c.embed_dim}, {c.depth} layers, {c.img_size} px, {c.num_tokens} tokens, batch 1, one thread")
        print(f"load: {os.getloadavg()[0]:.2f} (1-min average) on {os.cpu_count()} cores; onnxruntime {ort.__version__}, "
              f"torch {torch.__version__}")
        print(f"dense work: {report.macs_per_image / 1e6:.0f} M MACs = {2 * report.macs_per_image / 1e9:.2f} GFLOP per image; "
              f"single-thread matmul rate here {gflops:.1f} GFLOP/s -> dense-FLOP bound {bound_ms:.1f} ms")
        print(f"exponentials exp(delta*A): {exps / 1e6:.1f} M per image at torch.exp's rate here -> {exp_ms:.1f} ms; "
              f"dense + exp floor {bound_ms + exp_ms:.1f} ms = {torch_ms / (bound_ms + exp_ms):.1f}x the torch model at best")
        print(f"{'runtime':<34}{'ms / image':>12}{'vs torch':>10}{'max |dlogit|':>15}")
        print(f"{'torch model (baseline)':<34}{torch_ms:>12.1f}{1.0:>10.2f}{0.0:>15.2e}")
        print(f"{'onnxruntime, 2 SelectiveScan/layer':<34}{onnx_ms:>12.1f}{torch_ms / onnx_ms:>10.2f}"
              f"{np.abs(onnx_logits - reference).max():>15.2e}")
        if native is None:
            print(f"{'native Mamba kernel, both dirs':<34} {native_note}")
        else:
            print(f"{'native Mamba kernel, both dirs':<34}{timed['native']:>12.1f}{torch_ms / timed['native']:>10.2f}"
                  f"{np.abs(native_logits - reference).max():>15.2e}")
        best_name, best_ms = min(((k, v) for k, v in timed.items() if k != "torch"), key=lambda kv: kv[1])
        print(f"target: >= 3x the torch model -> {'met' if torch_ms / best_ms >= 3 else 'NOT met'} (best: {best_name}, "
              f"{torch_ms / best_ms:.2f}x); it is {best_ms / bound_ms:.1f}x the dense-FLOP bound, "
              f"{best_ms / (bound_ms + exp_ms):.1f}x the dense + exp floor")


if __name__ == "__main__":
    main()
