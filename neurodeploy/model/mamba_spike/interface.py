"""The spike interface: flatten (C, H, W) then a k-tap moving average over time.

`causal`:   out[t] = (1/k) * sum(s[t-k+1 .. t]), zeros before the start.
`centered`: out[t] = (1/k) * sum(s[t-k//2 .. t+(k-1)//2]), zeros at both ends (for odd k,
            t-k//2 .. t+k//2); this equals the causal output shifted by (k-1)//2
            (`config.lookahead`), so streaming runs the causal ring buffer, emits the output
            for step t - lookahead, and `flush` feeds lookahead zero frames.
The divisor is always k (zero padding counts), as the reference's averaging does.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class InterfaceState(NamedTuple):
    """The last k-1 flattened spike vectors, oldest first: `(B, k-1, F)`."""

    ring: torch.Tensor


def interface_initial_state(batch: int, features: int, window: int, *, dtype=torch.float32, device=None) -> InterfaceState:
    return InterfaceState(torch.zeros(batch, window - 1, features, dtype=dtype, device=device))


def moving_average(spikes: torch.Tensor, window: int, mode: str) -> torch.Tensor:
    """spikes `(B, T, F)` -> smoothed `(B, T, F)`; vectorised over all T."""
    if mode == "causal":
        left, right = window - 1, 0
    else:
        left, right = window // 2, window - 1 - window // 2
    padded = F.pad(spikes, (0, 0, left, right))  # (B, T + k - 1, F), features stay contiguous
    # cumulative sums make this O(T) and exact for the small integer counts involved
    csum = F.pad(padded.cumsum(dim=1), (0, 0, 1, 0))
    windowed = csum[:, window:] - csum[:, :-window]
    return windowed / window


def interface_step(spikes_t: torch.Tensor, state: InterfaceState) -> tuple[torch.Tensor, InterfaceState]:
    """Push one flattened spike vector `(B, F)`; return the causal average ending at it."""
    window = state.ring.shape[1] + 1
    stacked = torch.cat([state.ring, spikes_t.unsqueeze(1)], dim=1)
    smoothed = stacked.sum(dim=1) / window
    return smoothed, InterfaceState(stacked[:, 1:])
