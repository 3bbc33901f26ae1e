"""SpikeMamba LM -> NIR: refused, with what NIR 1.0.8 cannot express (FAMILIES.md §1.5).

The I/v dynamics of one gate alone would be a `CubaLIF`, but nothing in NIR 1.0.8 expresses
the adaptive threshold, the refractory counter, the `>=` compare, or spike x activation
gating (edges add; `Scale` is constant), and the neurons sit between analog Mamba ops. A
partial graph would be a different model, so there is none; the ONNX graphs are the export.
"""
from __future__ import annotations

from neurodeploy.exporters.nir import UnsupportedLayerError
from neurodeploy.model.spikemamba_lm.family import NIR_REASON
from neurodeploy.model.spikemamba_lm.model import SpikeMambaLM


def unsupported_features(model: SpikeMambaLM) -> list[str]:
    """The features of this model NIR cannot express, each with where it sits."""
    c = model.config
    gates = ", ".join(f"layers.*.spiking_mamba.{g}_spiking" for g in c.gates)
    out = []
    if c.adaptive_threshold:
        out.append(f"adaptive threshold ({gates}: threshold + threshold_adapt * a * threshold_scale)")
    if c.refractory_period > 0:
        out.append(f"refractory counter ({c.refractory_period} steps without synaptic input after a spike)")
    if c.spike_integration != "residual":
        out.append(f"spike x activation gating ({c.spike_gate_mode}, {c.spike_integration})")
    out.append("`>=` threshold compare (NIR's LIF fires on v > threshold)")
    return out


def export_spikemamba_nir(model: SpikeMambaLM):
    """Always raises `UnsupportedLayerError` naming what NIR 1.0.8 cannot express."""
    raise UnsupportedLayerError(
        f"SpikeMamba LM cannot be exported to NIR 1.0.8: {'; '.join(unsupported_features(model))}. {NIR_REASON}")
