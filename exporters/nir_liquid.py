"""Mamba-Liquid-Spiking spike encoders -> NIR, one graph per block (`encoder_{i}.nir`).

    input (nir.Input, (F0,))          x_p: real-valued (graded) input, not spikes
      -> fc1  (nir.Affine, (2S, F0))
      -> lif1 (nir.LIF | nir.IF, (2S,))  [-> scale1 (nir.Scale, g1) when g1 != 1]
      -> fc2  (nir.Affine, (S, 2S))
      -> lif2 (nir.LIF | nir.IF, (S,))   [-> scale2 (nir.Scale, g2) when g2 != 1]
      -> output (nir.Output, (S,))

The neurons follow the toolkit's LIF convention and metadata (`neurodeploy.formats.nir_frontend`:
tau = dt/(1-beta), r = tau/dt, v_leak 0, v_threshold; metadata beta, reset "subtract",
reset_timing "delayed", compare "greater"), written with its `lif_node`. beta is snnTorch's
clamp(beta, 0, 1), the value the model computes with (beta = 1 becomes nir.IF). snnTorch's
graded spike factor g multiplies the 0/1 spikes after the neuron, so the reset (decided by the
0/1 spike) is untouched: a Scale node carries it. A token model has no physical time step; the
graphs record the nominal `dt` they were written with (default 1 ms per token).

Lava/netx cannot run these graphs exactly (the delayed subtractive reset); the NIR runtime
(`neurodeploy.runtimes.nir.NIRFrontendRuntime`) runs them.
"""
from __future__ import annotations

import math
from pathlib import Path

import nir
import numpy as np

from neurodeploy.formats.liquid import DEFAULT_DT_S, ENCODER_FORMAT, LIF_LAYERS, encoder_file
from neurodeploy.formats.nir_frontend import lif_node, write_frontend
from neurodeploy.model.liquid.model import MambaLiquidSpiking, SpikeEncoder


def _array(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def export_encoder(encoder: SpikeEncoder, dt_s: float = DEFAULT_DT_S, *, block: int = 0) -> nir.NIRGraph:
    """One block's spike encoder as a NIR graph (layout and metadata in the module docstring)."""
    if not (math.isfinite(dt_s) and dt_s > 0):
        raise ValueError(f"dt_s={dt_s!r}; expected the nominal seconds per token (> 0), e.g. 1e-3")
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type=np.array([encoder.fc1.in_features]), metadata={"graded_input": True}),
    }
    edges: list[tuple[str, str]] = []
    previous = "input"
    for k, (fc, leaky) in enumerate(((encoder.fc1, encoder.lif1), (encoder.fc2, encoder.lif2)), start=1):
        nodes[f"fc{k}"] = nir.Affine(weight=_array(fc.weight), bias=_array(fc.bias))
        p = leaky.parameters_lif()
        nodes[f"lif{k}"] = lif_node((fc.out_features,), dt_s, beta=p.beta, threshold=p.threshold, reset=p.reset,
                                    reset_timing=p.reset_timing)
        edges += [(previous, f"fc{k}"), (f"fc{k}", f"lif{k}")]
        previous = f"lif{k}"
        if leaky.graded_factor != 1.0:
            nodes[f"scale{k}"] = nir.Scale(scale=np.full((fc.out_features,), leaky.graded_factor, np.float32),
                                           metadata={"graded_spikes_factor": leaky.graded_factor})
            edges.append((previous, f"scale{k}"))
            previous = f"scale{k}"
    nodes["output"] = nir.Output(output_type=np.array([encoder.fc2.out_features]))
    edges.append((previous, "output"))
    from neurodeploy import __version__

    metadata = {"dt": float(dt_s), "producer": f"neurodeploy {__version__}", "format": ENCODER_FORMAT, "block": block,
                "lif_layers": ",".join(LIF_LAYERS)}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def export_encoders(model: MambaLiquidSpiking, out_dir: str | Path, dt_s: float = DEFAULT_DT_S) -> tuple[Path, ...]:
    """Write `encoder_{i}.nir` for every block; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return tuple(write_frontend(export_encoder(block.spike_encoder, dt_s, block=i), out_dir / encoder_file(i))
                 for i, block in enumerate(model.blocks))
