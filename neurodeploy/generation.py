"""Token streaming and generation for token language models (SpikeMamba LM), on any `TokenRuntime`.

Token sources are text: whitespace-separated integer ids, from a file or stdin (`-`); a bad
entry is refused with its line and column, never skipped. `stream_tokens` feeds ids one at a
time and yields, per token, the model's next-token prediction and the spikes of that step.
`generate` prefills the prompt token by token and then continues: greedy (argmax, ties to the
lowest id) or sampling from softmax(logits / temperature), optionally restricted to the top k,
with a seeded numpy generator, so a seed reproduces a text on every runtime whose logits agree.
The state is carried exactly: generation never re-runs a prefix (upstream's generator does,
with stale spike states; FAMILIES.md §1.6).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np

from neurodeploy.errors import NeurodeployError
from neurodeploy.runtimes.spikemamba_lm import TokenRuntime, check_ids


class TokenSourceError(NeurodeployError, ValueError):
    """A token source that is not whitespace-separated integer ids; names the place."""


def iter_token_ids(stream: TextIO, origin: str) -> Iterator[int]:
    """Ids as they arrive (a line at a time: stdin can be a live pipe)."""
    for line_number, line in enumerate(stream, start=1):
        column = 0
        for item in line.split():
            column = line.index(item, column) + 1
            try:
                value = int(item)
            except ValueError:
                raise TokenSourceError(f"{origin}: line {line_number}, column {column}: {item!r} is not a token id; "
                                       "a token source holds whitespace-separated integer ids") from None
            if value < 0:
                raise TokenSourceError(f"{origin}: line {line_number}, column {column}: negative token id {value}")
            yield value
            column += len(item) - 1


def read_token_ids(source: str | Path) -> list[int]:
    if str(source) == "-":
        return list(iter_token_ids(sys.stdin, "<stdin>"))
    path = Path(source)
    if not path.is_file():
        raise TokenSourceError(f"{path}: no such file (a text file of token ids, or `-` for stdin)")
    with path.open("r", encoding="utf-8") as f:
        return list(iter_token_ids(f, str(path)))


def open_token_source(source: str | Path) -> Iterator[int]:
    """Ids lazily: stdin is consumed as it is written."""
    if str(source) == "-":
        return iter_token_ids(sys.stdin, "<stdin>")
    return iter(read_token_ids(source))


@dataclass(frozen=True)
class TokenResult:
    index: int
    token: int
    predicted: int  # argmax of the logits after this token
    spikes: dict[str, int]  # "layers.{i}.{gate}" -> spikes at this token
    latency_us: float

    def to_dict(self) -> dict:
        return {"index": self.index, "token": self.token, "predicted": self.predicted, "spikes": self.spikes,
                "latency_us": round(self.latency_us, 1)}


def _spike_counts(spikes: dict[str, np.ndarray]) -> dict[str, int]:
    return {f"layers.{i}.{g}": int(s[i].sum()) for g, s in spikes.items() for i in range(s.shape[0])}


def stream_tokens(runtime: TokenRuntime, tokens: Iterator[int]) -> Iterator[TokenResult]:
    import time

    state = runtime.initial_state(1)
    for index, token in enumerate(tokens):
        start = time.perf_counter()
        out = runtime.step(np.array([token], dtype=np.int64), state)
        latency = (time.perf_counter() - start) * 1e6
        state = out.state
        yield TokenResult(index, token, int(np.argmax(out.logits[0])), _spike_counts(out.spikes), latency)


@dataclass(frozen=True)
class SamplingOptions:
    greedy: bool = True
    temperature: float = 1.0
    top_k: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise NeurodeployError(f"temperature {self.temperature}; expected > 0 (`--temperature`)")
        if self.top_k is not None and self.top_k < 1:
            raise NeurodeployError(f"top_k {self.top_k}; expected >= 1 (`--top-k`)")


@dataclass
class Generation:
    prompt: list[int]
    generated: list[int] = field(default_factory=list)
    spikes_per_token: list[dict[str, int]] = field(default_factory=list)  # prompt and generated tokens

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "generated": self.generated, "spikes_per_token": self.spikes_per_token}


def _choose(logits: np.ndarray, options: SamplingOptions, rng: np.random.Generator) -> int:
    if options.greedy:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / options.temperature
    if options.top_k is not None and options.top_k < scaled.size:
        cutoff = np.sort(scaled)[-options.top_k]
        scaled = np.where(scaled >= cutoff, scaled, -np.inf)
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


def generate(runtime: TokenRuntime, prompt: list[int], max_new_tokens: int,
             options: SamplingOptions = SamplingOptions(), *, stop_token: int | None = None) -> Generation:
    if not prompt:
        raise TokenSourceError("the prompt is empty; give at least one token id")
    if max_new_tokens < 0:
        raise NeurodeployError(f"max_new_tokens {max_new_tokens}; expected >= 0 (`--max-new-tokens`)")
    check_ids(np.asarray(prompt), runtime.vocab_size)
    rng = np.random.default_rng(options.seed)
    result = Generation(list(prompt))
    steps = runtime.prefill(np.array([prompt], dtype=np.int64))
    result.spikes_per_token.extend(_spike_counts(s.spikes) for s in steps)
    out = steps[-1]
    state = out.state
    for i in range(max_new_tokens):
        token = _choose(out.logits[0], options, rng)
        result.generated.append(token)
        if token == stop_token or i == max_new_tokens - 1:
            break
        out = runtime.step(np.array([token], dtype=np.int64), state)
        state = out.state
        result.spikes_per_token.append(_spike_counts(out.spikes))
    return result
