"""`neurodeploy verify` and `neurodeploy bench` for token-model bundles (SpikeMamba LM).

verify: the same tokens through the PyTorch model (offline forward: the reference), the ONNX
full graph, and token by token through the ONNX step graph, the PyTorch `step` and the native
runtime (numba Mamba step); per runtime
the max |logits - reference|, whether every gate's spikes are identical, and the max state
difference after the last token. Tolerances: logits 1e-4; states 1e-5 scaled by max(1, the
state's largest magnitude) (a membrane of 40 carries float32 rounding of ~4e-6 from a different
but equal order of operations in the step and sequence forms); spikes identical.
bench: per-token latency at batch 1 of each token runtime (p50 / p95 over the tokens).
"""
from __future__ import annotations

import statistics
import time
import warnings

import numpy as np
import torch

from neurodeploy.formats.onnx_spikemamba import state_names, state_to_feeds
from neurodeploy.lm_bundle import LMBundle

LOGITS_TOLERANCE = 1e-4
STATE_TOLERANCE = 1e-5


def _tokens(bundle: LMBundle, source: str | None, length: int, batch: int, seed: int = 0) -> tuple[np.ndarray, str]:
    if source is not None:
        from neurodeploy.generation import TokenSourceError, read_token_ids

        ids = read_token_ids(source)[:length]
        if not ids:
            raise TokenSourceError(f"{source}: no token ids read; a token source holds whitespace-separated integer ids")
        return np.array([ids], dtype=np.int64), f"{len(ids)} tokens of {source}"
    gen = np.random.default_rng(seed)
    return gen.integers(0, bundle.config.vocab_size, (batch, length)), f"{batch} x {length} seeded random tokens"


def verify_lm_bundle(bundle: LMBundle, source: str | None = None, *, length: int = 24, batch: int = 2) -> dict:
    import onnxruntime as ort

    tokens, described = _tokens(bundle, source, length, batch)
    model = bundle.model()
    gates, n_layers = bundle.config.gates, bundle.config.n_layer
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # adaptive pooling: said at export
        reference = model(torch.from_numpy(tokens))
    ref_logits = reference.logits.numpy()
    ref_spikes = {g: torch.stack([reference.spikes[f"layers.{i}.{g}"] for i in range(n_layers)]).numpy() for g in gates}
    ref_state = state_to_feeds(reference.state, gates)
    names = state_names(gates)
    runtimes: dict[str, dict] = {}

    def record(name: str, logits: np.ndarray, spikes: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> None:
        logits_err = float(np.abs(logits - ref_logits).max())
        state_err = max(float(np.abs(state[n] - ref_state[n]).max()) / max(1.0, float(np.abs(ref_state[n]).max()))
                        for n in names)
        identical = all(np.array_equal(spikes[g], ref_spikes[g]) for g in gates)
        runtimes[name] = {"logits_max_abs": logits_err, "states_max_scaled": state_err, "spikes_identical": identical,
                          "passed": logits_err <= LOGITS_TOLERANCE and state_err <= STATE_TOLERANCE and identical}

    if bundle.has("full"):
        session = ort.InferenceSession(str(bundle.path("full")), providers=["CPUExecutionProvider"])
        out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"tokens": tokens})))
        record("onnx full", out["logits"], {g: out[f"spikes_{g}"] for g in gates}, {n: out[f"{n}_out"] for n in names})
    kinds = ["torch", "native"] + (["onnxruntime"] if bundle.has("step") else [])
    if bundle.config.streamable:
        for kind in kinds:
            steps = bundle.token_runtime(kind).prefill(tokens)
            record(f"{kind} step", np.stack([s.logits for s in steps], axis=1),
                   {g: np.stack([s.spikes[g] for s in steps], axis=2) for g in gates}, steps[-1].state)
    return {"inputs": described, "reference": "torch offline forward",
            "tolerances": {"logits": LOGITS_TOLERANCE, "states (scaled by max(1, |state|))": STATE_TOLERANCE,
                           "spikes": "identical"},
            "runtimes": runtimes, "passed": all(r["passed"] for r in runtimes.values())}


def bench_lm_bundle(bundle: LMBundle, *, tokens: int = 200) -> dict:
    ids = np.random.default_rng(0).integers(0, bundle.config.vocab_size, tokens)
    out = {"tokens": tokens, "batch": 1}
    for kind in ("torch", "onnxruntime", "native"):
        if kind == "onnxruntime" and not bundle.has("step"):
            continue
        runtime = bundle.token_runtime(kind)
        state = runtime.initial_state(1)
        times = []
        for token in ids:
            start = time.perf_counter()
            state = runtime.step(np.array([token]), state).state
            times.append((time.perf_counter() - start) * 1e6)
        out[f"{kind}_per_token_us"] = {"p50": statistics.median(times), "p95": float(np.percentile(times, 95))}
    return out
