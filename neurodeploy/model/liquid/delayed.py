"""Streaming the non-causal modes (`parallel`, `bidirectional`) with a fixed look-ahead.

The temporal adapter P reads rho_t = sum_{j<k} kappa_j o_{t+j-p} with k = min(50, T),
p = k // 2. Once a sequence holds 50 tokens, k = 50 and p = 25 whatever its final length, so
token t is final as soon as o_{t+24} exists: a block emits its output 24 tokens late. Below
50 tokens the kernel itself depends on the final length, so nothing can be emitted before the
stream ends: a block buffers its (at most 49) inputs and, if the stream ends there, `flush`
runs the offline block on them. Blocks chain, so the delay adds up: 24 tokens per block once
warm, and block i+1 starts when block i has emitted 50 outputs.

Everything causal (encoder, CfC, Mamba) steps token by token with explicit state, as
`LiquidBlock.step` does; the per-block state of this stream is that plus the spikes of the
window (50 tokens) and the liquid outputs and residuals of the tokens not yet emitted.
`sequential` models need none of this: they stream with `MambaLiquidSpiking.step`.
"""
from __future__ import annotations

import torch

from neurodeploy.model.liquid.config import TEMPORAL_KERNEL_LENGTH
from neurodeploy.model.liquid.model import LiquidBlock, MambaLiquidSpiking

LOOKAHEAD = TEMPORAL_KERNEL_LENGTH - 1 - TEMPORAL_KERNEL_LENGTH // 2  # 24 tokens
_PAST = TEMPORAL_KERNEL_LENGTH // 2  # 25 tokens


class _BlockStream:
    def __init__(self, block: LiquidBlock, batch: int):
        self.block = block
        state = block.initial_state(batch)
        self.encoder, self.liquid_h, self.mamba = state.encoder, state.liquid_h, state.mamba
        self.received = 0
        self.emitted = 0
        self.inputs: list[torch.Tensor] = []  # kept while fewer than 50 tokens arrived (short-stream flush)
        self.spikes: dict[int, torch.Tensor] = {}  # token index -> o_t, the window of P
        self.pending: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # (q, l, residual)

    def push(self, x_t: torch.Tensor) -> list[torch.Tensor]:
        block = self.block
        if self.received < TEMPORAL_KERNEL_LENGTH:
            self.inputs.append(x_t)
        x_p, residual = block.project_input(x_t)
        _, o, self.encoder = block.spike_encoder.step(x_p, self.encoder)
        q = block.liquid_cell.step(o, self.liquid_h)
        if block.liquid_cell.stateful:
            self.liquid_h = q
        self.spikes[self.received] = o
        self.pending[self.received] = (q, block.liquid_to_hidden(q), residual)
        self.received += 1
        if self.received < TEMPORAL_KERNEL_LENGTH:
            return []
        if self.received == TEMPORAL_KERNEL_LENGTH:
            self.inputs.clear()  # the kernel is fixed from here on
        outputs = []
        while self.emitted + LOOKAHEAD < self.received:
            outputs.append(self._emit())
        return outputs

    def _emit(self) -> torch.Tensor:
        block, t = self.block, self.emitted
        zeros = torch.zeros_like(next(iter(self.spikes.values())))
        window = torch.stack([self.spikes.get(j, zeros) for j in range(t - _PAST, t + LOOKAHEAD + 1)], dim=1)
        rho = torch.einsum("j,bjs->bs", block.spike_to_mamba.temporal_kernel, window)
        m, _, self.mamba = block.mamba.step(block.norm1(block.spike_to_mamba.spike_projection(rho)), self.mamba)
        q, liquid, residual = self.pending.pop(t)
        if block.mode == "parallel":
            fused, _ = block.gate(liquid, m)
        else:
            q_new, m_new = block.cross_attention(q, m)
            fused = 0.5 * block.liquid_to_hidden(q_new) + 0.5 * m_new
        self.spikes.pop(t - _PAST, None)
        self.emitted += 1
        return block.norm2(fused + residual)

    def flush(self) -> list[torch.Tensor]:
        if self.received == 0:
            return []
        if self.received < TEMPORAL_KERNEL_LENGTH:
            out, _, _ = self.block(torch.stack(self.inputs, dim=1))  # the kernel of this length: offline
            return list(out.unbind(1))
        return [self._emit() for _ in range(self.received - self.emitted)]


class DelayedStream:
    """Token-by-token stream of a parallel / bidirectional model: `push` returns the logits of
    the tokens that became final (in order, possibly none, possibly a burst), `flush` the rest.
    Concatenated, they equal the offline logits of the whole sequence."""

    def __init__(self, model: MambaLiquidSpiking, batch: int = 1):
        if model.streamable:
            raise ValueError("a sequential model is causal: stream it with MambaLiquidSpiking.step (no delay)")
        self.model = model
        self.blocks = [_BlockStream(block, batch) for block in model.blocks]

    @property
    def delay_tokens(self) -> int:
        """Tokens between a token's arrival and its logits once every block is warm (>= 50 tokens)."""
        return LOOKAHEAD * len(self.blocks)

    @torch.no_grad()
    def push(self, ids_t: torch.Tensor) -> list[torch.Tensor]:
        carry = [self.model.embedding(ids_t)]
        for stream in self.blocks:
            carry = [out for x in carry for out in stream.push(x)]
        return [self.model.output_head(x) for x in carry]

    @torch.no_grad()
    def flush(self) -> list[torch.Tensor]:
        carry: list[torch.Tensor] = []
        for stream in self.blocks:
            carry = [out for x in carry for out in stream.push(x)] + stream.flush()
        return [self.model.output_head(x) for x in carry]
