"""The SpikeMamba LM's ONNX streaming-state layout: names, order and conversion to and from PyTorch.

One home for it, used by the exporter (`neurodeploy.exporters.onnx_spikemamba`) and the token
runtimes (`neurodeploy.runtimes.spikemamba_lm`, `spikemamba_native`), so a state can move
between runtimes. Per layer, stacked over layers: `conv_state (L, B, Di, K)`, `ssm_state
(L, B, Di, N)`, and per gate `<gate>_<field>` for the GateState fields; each output is named
`<state>_out` (docs/spikemamba_lm.md).
"""
from __future__ import annotations

import numpy as np
import torch

from neurodeploy.model.mamba import MambaState
from neurodeploy.model.spikemamba_lm.model import LayerState, LMState
from neurodeploy.model.spikemamba_lm.neuron import GateState

GATE_FIELDS = ("v", "current", "adapt", "refractory")  # GateState's fields, in order


def state_names(model_or_gates) -> tuple[str, ...]:
    gates = model_or_gates.config.gates if hasattr(model_or_gates, "config") else model_or_gates
    return ("conv_state", "ssm_state", *(f"{g}_{f}" for g in gates for f in GATE_FIELDS))


def state_to_feeds(state: LMState, gates: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A PyTorch `LMState` as the graphs' stacked state arrays."""
    feeds = {
        "conv_state": torch.stack([layer.mamba.conv_state for layer in state.layers]),
        "ssm_state": torch.stack([layer.mamba.ssm_state for layer in state.layers]),
    }
    for k, g in enumerate(gates):
        for j, f in enumerate(GATE_FIELDS):
            feeds[f"{g}_{f}"] = torch.stack([layer.gates[k][j] for layer in state.layers])
    return {n: v.detach().cpu().numpy().astype(np.float32, copy=False) for n, v in feeds.items()}


def feeds_to_state(feeds: dict[str, np.ndarray], gates: tuple[str, ...]) -> LMState:
    """The inverse of `state_to_feeds` (names without the `_out` suffix)."""
    n_layers = feeds["conv_state"].shape[0]
    t = {n: torch.from_numpy(np.array(v)) for n, v in feeds.items()}
    return LMState(tuple(
        LayerState(MambaState(t["conv_state"][i], t["ssm_state"][i]),
                   tuple(GateState(*(t[f"{g}_{f}"][i] for f in GATE_FIELDS)) for g in gates))
        for i in range(n_layers)
    ))
