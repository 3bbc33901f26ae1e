"""The ONNX backbone format of this toolkit: file names, input/output names, metadata keys and the
streaming-state layout, shared by the exporter (`neurodeploy.exporters.onnx`) and the runtime
(`neurodeploy.runtimes.onnxruntime`). docs/streaming_state.md explains the layout.

Three graphs, one per way the backbone is driven:

    backbone.onnx        spikes (B, T, C, H, W) -> logits (B, classes)                 "full"
    backbone_chunk.onnx  (spikes, *STATE_NAMES) -> (logits, *STATE_OUTPUT_NAMES)         "chunk"
    backbone_step.onnx   (spikes_t (B, C, H, W), *STATE_NAMES) -> (logits, *outputs)      "step"

The streaming state (the `BackboneState` of `MambaSpike.backbone_step`), in this order:

    interface_ring (B, k-1, F)               last k-1 flattened spike vectors, oldest first
    conv_state     (n_layers, B, d_inner, d_conv)
    ssm_state      (n_layers, B, d_inner, d_state)
    feature_sum    (B, d_model)              sum of the last block's outputs
    count          int64 ()                  steps in feature_sum
    pushed         int64 ()                  frames pushed into the interface

Each output state is named `<state>_out`; `logits` are the anytime logits
head(feature_sum / max(count, 1)).

Flush arithmetic: the centred interface looks `lookahead = (k-1)//2` frames ahead (0 when
causal), so finishing a sample of `received` real frames pushes
`received + lookahead - pushed` zero frames (`flush_steps`); the graphs do not know
`received`, so the runtime counts it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch

from neurodeploy.model.mamba import MambaState
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.model.mamba_spike.interface import InterfaceState
from neurodeploy.model.mamba_spike.model import BackboneState

GraphKind = Literal["full", "chunk", "step"]
GRAPH_KINDS: tuple[GraphKind, ...] = ("full", "chunk", "step")
FILES: dict[GraphKind, str] = {"full": "backbone.onnx", "chunk": "backbone_chunk.onnx", "step": "backbone_step.onnx"}
SEQUENCE_INPUT = "spikes"  # full and chunk graphs: (B, T, C, H, W)
STEP_INPUT = "spikes_t"  # step graph: (B, C, H, W)
LOGITS = "logits"
STATE_NAMES = ("interface_ring", "conv_state", "ssm_state", "feature_sum", "count", "pushed")
STATE_OUTPUT_NAMES = tuple(f"{name}_out" for name in STATE_NAMES)

# metadata_props keys every exported graph carries
META_GRAPH = "neurodeploy.graph"  # "full" | "chunk" | "step"
META_MODEL_CONFIG = "neurodeploy.model_config"  # MambaSpikeConfig as JSON
META_STATE_INPUTS = "neurodeploy.state_inputs"
META_STATE_OUTPUTS = "neurodeploy.state_outputs"


def state_layout(config: MambaSpikeConfig) -> dict[str, tuple[type, list]]:
    """Per state name: (numpy dtype, dims) with the batch as the symbolic dim "batch"."""
    L, k = config.n_layers, config.interface_window
    return {
        "interface_ring": (np.float32, ["batch", k - 1, config.spike_features]),
        "conv_state": (np.float32, [L, "batch", config.d_inner, config.d_conv]),
        "ssm_state": (np.float32, [L, "batch", config.d_inner, config.d_state]),
        "feature_sum": (np.float32, ["batch", config.d_model]),
        "count": (np.int64, []),
        "pushed": (np.int64, []),
    }


def _shape(dims: list, batch: int) -> tuple[int, ...]:
    return tuple(batch if d == "batch" else int(d) for d in dims)


def zero_state(config: MambaSpikeConfig, batch: int) -> dict[str, np.ndarray]:
    """The state feeds at the start of a sample."""
    return {name: np.zeros(_shape(dims, batch), dtype) for name, (dtype, dims) in state_layout(config).items()}


def check_state(config: MambaSpikeConfig, feeds: dict[str, np.ndarray]) -> int:
    """The batch of a set of state feeds; ValueError naming the first state of the wrong shape."""
    batch = int(feeds["feature_sum"].shape[0])
    for name, (_, dims) in state_layout(config).items():
        if tuple(feeds[name].shape) != _shape(dims, batch):
            raise ValueError(f"state {name!r} of shape {tuple(feeds[name].shape)}; this backbone expects "
                             f"{_shape(dims, batch)}")
    return batch


def state_to_feeds(state: BackboneState) -> dict[str, np.ndarray]:
    """A PyTorch `BackboneState` as the chunk/step graphs' state inputs."""
    def array(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float32, copy=False)

    return {
        "interface_ring": array(state.interface.ring),
        "conv_state": array(torch.stack([s.conv_state for s in state.layers])),
        "ssm_state": array(torch.stack([s.ssm_state for s in state.layers])),
        "feature_sum": array(state.feature_sum),
        "count": np.array(state.count, dtype=np.int64),
        "pushed": np.array(state.pushed, dtype=np.int64),
    }


def feeds_to_state(feeds: dict[str, np.ndarray], received: int) -> BackboneState:
    """State feeds (copied) as the PyTorch model's `BackboneState`; `received` real frames so far."""
    layers = tuple(MambaState(torch.tensor(conv), torch.tensor(ssm))
                   for conv, ssm in zip(feeds["conv_state"], feeds["ssm_state"]))
    return BackboneState(interface=InterfaceState(torch.tensor(feeds["interface_ring"])), layers=layers,
                         feature_sum=torch.tensor(feeds["feature_sum"]), count=int(feeds["count"]),
                         received=received, pushed=int(feeds["pushed"]))


def flush_steps(received: int, lookahead: int, pushed: int) -> int:
    """Zero frames that finish a sample of `received` real frames (module docstring)."""
    return received + lookahead - pushed


def read_metadata(proto_or_path: onnx.ModelProto | str | Path) -> dict[str, str]:
    """The metadata props of an exported backbone graph (read without loading the weights)."""
    proto = proto_or_path if isinstance(proto_or_path, onnx.ModelProto) else onnx.load(str(proto_or_path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
