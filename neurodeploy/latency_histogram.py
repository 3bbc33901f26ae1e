"""Streaming percentiles in bounded memory, for runs that never end (issue 21: keeping every step
latency cost ~125 bytes a step, a gigabyte a day for a camera left running).

Values go into log-spaced buckets 2 % wide (1,280 counters from 0.01 to 10^9): any percentile
comes back within 1 % of the exact one; count, mean, min and max are exact. HDR Histogram does
this for the JVM and C; its Python port needs a C build, and one array of counters is enough here.
"""
from __future__ import annotations

import math

import numpy as np


class LogHistogram:
    def __init__(self, low: float = 1e-2, high: float = 1e9, relative_error: float = 0.01):
        self.low = low
        self._log_step = math.log1p(2 * relative_error)
        self.counts = np.zeros(int(math.ceil(math.log(high / low) / self._log_step)) + 2, np.int64)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        index = 0 if value <= self.low else 1 + int(math.log(value / self.low) / self._log_step)
        self.counts[min(index, len(self.counts) - 1)] += 1
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def __len__(self) -> int:
        return self.count

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100), within the relative error; None when empty."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        # the geometric middle of the bucket, kept inside what was seen
        middle = self.low * math.exp((index - 0.5) * self._log_step) if index else self.low
        return float(min(max(middle, self.min), self.max))

    def summary(self) -> dict[str, float | None]:
        if self.count == 0:
            return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
        return {"p50": self.percentile(50), "p95": self.percentile(95), "p99": self.percentile(99),
                "mean": self.total / self.count, "max": float(self.max)}
