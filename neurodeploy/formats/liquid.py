"""The Mamba-Liquid-Spiking deployment format: file names, graph input/output names, encoder
layout, shared by the exporters (`neurodeploy.exporters.nir_liquid`, `.onnx_liquid`) and the
runtime (`neurodeploy.runtimes.liquid`). docs/liquid.md describes the whole layout.

    encoder_{i}.nir      block i's spike encoder: input -> fc1 -> lif1 [-> scale1] -> fc2 -> lif2
                         [-> scale2] -> output (graph metadata "format" = ENCODER_FORMAT)
    stem.onnx            ids (B, T) int64 -> x_p (B, T, F0)
    block_{i}.onnx       (x_p, spikes) -> (next, liquid, mamba, liquid_h)
    block_{i}_step.onnx  (x_p_t, spikes_t, *STATE_NAMES) -> (next_t, *STATE_OUTPUT_NAMES)
"""
from __future__ import annotations

ENCODER_FORMAT = "neurodeploy.liquid_encoder/1"
DEFAULT_DT_S = 1e-3  # nominal seconds per token recorded in the encoder graphs
LIF_LAYERS = ("lif1", "lif2")
STEM_FILE = "stem.onnx"
STATE_NAMES = ("liquid_h", "conv_state", "ssm_state")
STATE_OUTPUT_NAMES = tuple(f"{name}_out" for name in STATE_NAMES)


def encoder_file(index: int) -> str:
    return f"encoder_{index}.nir"


def block_file(index: int, *, step: bool = False) -> str:
    return f"block_{index}{'_step' if step else ''}.onnx"
