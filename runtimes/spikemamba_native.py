"""SpikeMamba LM on the native runtime: numba's generic Mamba-1 layer step plus numpy around it.

Per token: embedding row, per layer RMSNorm -> LIF gates and gating (numpy float32, the
operation order of `neurodeploy.model.spikemamba_lm.neuron.gate_step`) -> the compiled
`mamba_layer_step` of `neurodeploy.runtimes.native` (conv bias and projection biases included)
-> pooling and residual, then the final RMSNorm and the tied head. The state is the graphs'
stacked arrays (`TokenRuntime`), copied before the kernel updates them in place, so a state
handed in is never changed and states move freely between torch, ONNX and native runtimes.
"""
from __future__ import annotations

import numpy as np
import torch

from neurodeploy.formats.onnx_spikemamba import state_names
from neurodeploy.model.spikemamba_lm.model import SpikeMambaLM
from neurodeploy.model.spikemamba_lm.neuron import ADAPT_DECAY, ADAPT_GAIN
from neurodeploy.runtimes.native import MambaLayerWeights, mamba_layer_step
from neurodeploy.runtimes.spikemamba_lm import State, TokenRuntime, TokenStep, check_ids

_F32 = np.float32


def _arr(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=_F32)


class _Gate:
    def __init__(self, lif):
        p = lif.parameters_tuple()
        self.beta_mem, self.beta_syn = _F32(p.beta_mem.item()), _F32(p.beta_syn.item())
        self.threshold = _arr(p.threshold)
        self.adaptive = p.adapt_gain is not None
        self.adapt_gain = _arr(p.adapt_gain) if self.adaptive else None
        self.adapt_scale = _arr(p.adapt_scale) if self.adaptive else None
        self.period = _F32(p.refractory_period)
        self.subtract = p.reset_mode == "subtract"

    def step(self, x: np.ndarray, v, current, adapt, refractory):
        current = self.beta_syn * current + x
        v = self.beta_mem * v + current * (refractory <= 0).astype(_F32)
        threshold = self.threshold + self.adapt_gain * adapt * self.adapt_scale if self.adaptive else self.threshold
        spikes = (v >= threshold).astype(_F32)
        v = v - spikes * threshold if self.subtract else v * (_F32(1) - spikes)
        if self.adaptive:
            adapt = _F32(ADAPT_DECAY) * adapt + _F32(ADAPT_GAIN) * spikes
        refractory = np.where(spikes > 0.5, self.period, np.maximum(refractory - _F32(1), _F32(0))).astype(_F32)
        return spikes, (v, current, adapt, refractory)


class NativeTokenRuntime(TokenRuntime):
    name = "native"

    def __init__(self, model: SpikeMambaLM):
        c = model.config
        if not c.streamable:
            from neurodeploy.errors import UnsupportedCapabilityError

            raise UnsupportedCapabilityError("spikemamba-lm", "stream", "temporal_pooling 'adaptive' is not causal")
        self.config, self.vocab_size, self.gates = c, c.vocab_size, c.gates
        self.embedding = _arr(model.embedding.weight)
        self.head_t = np.ascontiguousarray(self.embedding.T)
        self.norm_f = _arr(model.norm_f.weight)
        self.layers = []
        for block in model.layers:
            layer = block.spiking_mamba
            soft = c.spike_gate_mode == "soft"
            self.layers.append({
                "norm": _arr(block.norm.weight),
                "mamba": MambaLayerWeights.from_module(layer.mamba),
                "gates": {g: _Gate(getattr(layer, f"{g}_spiking")) for g in c.gates},
                "g": _arr(layer.spike_gate) if soft else None,
                "pool": _arr(1 + layer.temporal_pooling_weights) if c.temporal_pooling == "learnable" else None,
            })
        self._names = state_names(c.gates)

    def _rms(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        inv = _F32(1) / np.sqrt(np.mean(x * x, axis=-1, keepdims=True, dtype=_F32) + _F32(self.config.rms_norm_eps))
        return (x * inv * weight).astype(_F32)

    def initial_state(self, batch: int) -> State:
        c = self.config
        L = c.n_layer
        state = {"conv_state": np.zeros((L, batch, c.d_inner, c.d_conv), _F32),
                 "ssm_state": np.zeros((L, batch, c.d_inner, c.d_state), _F32)}
        state.update({n: np.zeros((L, batch, c.d_model), _F32) for n in self._names[2:]})
        return state

    def step(self, token: np.ndarray, state: State) -> TokenStep:
        token = np.asarray(token, dtype=np.int64)
        check_ids(token, self.vocab_size)
        new = {n: np.array(v, dtype=_F32, copy=True, order="C") for n, v in state.items()}
        spikes = {g: np.zeros((self.config.n_layer, token.shape[0], self.config.d_model), _F32) for g in self.gates}
        x = self.embedding[token]
        for i, layer in enumerate(self.layers):
            a = self._rms(x, layer["norm"])

            def gate(name: str, value: np.ndarray) -> np.ndarray:
                fields = [f"{name}_{f}" for f in ("v", "current", "adapt", "refractory")]
                s, out = layer["gates"][name].step(value, *(new[f][i] for f in fields))
                for f, o in zip(fields, out):
                    new[f][i] = o
                spikes[name][i] = s
                return s

            def gated(value: np.ndarray, s: np.ndarray) -> np.ndarray:
                g = layer["g"]
                return value * s if g is None else value * (g * s + (_F32(1) - g))

            m_in = gated(a, gate("pre", a)) if "pre" in self.gates else a
            out = mamba_layer_step(layer["mamba"], new["conv_state"][i], new["ssm_state"][i], m_in)
            if "post" in self.gates:
                out = gated(out, gate("post", out))
            if "residual" in self.gates:
                out = out + layer["g"] * gate("residual", a)
            if layer["pool"] is not None:
                out = out * layer["pool"]
            x = (x + out).astype(_F32)
        logits = self._rms(x, self.norm_f) @ self.head_t
        return TokenStep(logits.astype(_F32), spikes, new)
