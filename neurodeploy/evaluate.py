"""`neurodeploy eval`: a model over a whole dataset folder; accuracy, spikes, SynOps, energy, throughput.

    result = evaluate("bundle/", "N-MNIST/Test", binning=Binning(n_time_bins=300))
    write_eval(result, "eval_out/")        # eval.json, eval_samples.csv, eval.md, eval.html

The dataset is listed (`neurodeploy.datasets`), cut down (`max_samples`, `shard`), split into
chunks of samples, and each chunk is evaluated by `eval_share.evaluate_share` on an engine:
`local` (in this process) or `dask` (a Dask distributed cluster, `neurodeploy.scale_out`).
`merge` puts the partial results together by sample index: each sample is counted once (a chunk
re-run after a worker died replaces, never adds), and every total is summed in index order, so
the result is the same whatever the number of workers and the order they finish in.
Counts are measured per sample (neurodeploy.report's NeuroBench conventions); energies are
estimates (front-end on each target + backbone on the host) and say so.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from neurodeploy.datasets import Dataset, SampleSpec, discover
from neurodeploy.eval_share import EvalError, EvalSetup, Failure, SampleOutcome, SharePartial, evaluate_share

ENGINES = ("local", "dask")
ESTIMATE_NOTE = ("Counts are measured per sample; energies are estimates: per-operation constants x counts "
                 "(front-end on the target, backbone on the host), ignoring memory traffic and I/O.")


@dataclass(frozen=True)
class EvalResult:
    dataset: str
    layout: str
    setup: dict[str, Any]
    num_classes: int
    outcomes: tuple[SampleOutcome, ...]  # in dataset order
    failures: tuple[Failure, ...]
    listed: int  # samples selected for evaluation
    compute_s: float
    model_s: float
    read_s: float
    wall_s: float
    engine: str
    workers: int
    layer_names: tuple[str, ...] = ("lif1", "lif2", "lif3")
    note: str = ESTIMATE_NOTE
    extra: dict[str, Any] = field(default_factory=dict)

    # -- metrics (all summed in dataset order) -------------------------------------------
    @property
    def labelled(self) -> list[SampleOutcome]:
        return [o for o in self.outcomes if o.label is not None]

    @property
    def accuracy(self) -> float | None:
        labelled = self.labelled
        return sum(o.prediction == o.label for o in labelled) / len(labelled) if labelled else None

    def confusion(self) -> list[list[int]]:
        """rows: label, columns: prediction."""
        n = self.num_classes
        matrix = [[0] * n for _ in range(n)]
        for o in self.labelled:
            if o.label < n:
                matrix[o.label][o.prediction] += 1
        return matrix

    def per_class_accuracy(self) -> list[float | None]:
        return [(row[k] / sum(row)) if sum(row) else None for k, row in enumerate(self.confusion())]

    def _mean(self, values: Sequence[float]) -> float | None:
        return sum(values) / len(values) if values else None

    def per_layer_mean(self, attribute: str) -> dict[str, float | None]:
        return {name: self._mean([getattr(o, attribute)[k] for o in self.outcomes])
                for k, name in enumerate(self.layer_names)}

    def energy_per_sample(self) -> dict[str, float | None]:
        targets = self.setup["targets"]
        return {t: self._mean([o.energy_j[k] for o in self.outcomes]) for k, t in enumerate(targets)}

    def fast_math_agreement(self) -> float | None:
        pairs = [o for o in self.outcomes if o.exact_prediction is not None]
        return sum(o.prediction == o.exact_prediction for o in pairs) / len(pairs) if pairs else None

    def summary(self) -> dict[str, Any]:
        n = len(self.outcomes)
        return {
            "samples_listed": self.listed,
            "samples_evaluated": n,
            "samples_failed": self.listed - n,
            "recordings_failed": len({f.path for f in self.failures}),
            "accuracy": self.accuracy,
            "per_class_accuracy": self.per_class_accuracy(),
            "confusion_matrix": self.confusion(),
            "spikes_per_sample": self.per_layer_mean("spikes_per_layer"),
            "synops_per_sample": self.per_layer_mean("synops_per_layer"),
            "backbone_macs_per_sample": self._mean([o.backbone_macs for o in self.outcomes]),
            "energy_j_per_sample": self.energy_per_sample(),
            "mean_steps": self._mean([o.n_steps for o in self.outcomes]),
            "fast_math_prediction_agreement": self.fast_math_agreement(),
            # the runtime alone; counting (per-sample SynOps and energy) and reading are timed apart
            "throughput_samples_per_s": n / self.model_s if self.model_s > 0 else None,
            "with_counting_samples_per_s": n / self.compute_s if self.compute_s > 0 else None,
            "wall_samples_per_s": n / self.wall_s if self.wall_s > 0 else None,
            "model_s": self.model_s,
            "compute_s": self.compute_s,
            "read_s": self.read_s,
            "wall_s": self.wall_s,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "layout": self.layout, "engine": self.engine, "workers": self.workers,
            "setup": self.setup, "note": self.note, "summary": self.summary(),
            "failures": [asdict(f) for f in self.failures],
            "samples": [asdict(o) for o in self.outcomes],
        }


def merge(partials: Sequence[SharePartial],
          listed: Sequence[SampleSpec]) -> tuple[tuple[SampleOutcome, ...], tuple[Failure, ...]]:
    """Outcomes ordered by sample index, one per sample; failures ordered by path."""
    by_index: dict[int, SampleOutcome] = {}
    failures: dict[tuple[str, tuple[str, ...]], Failure] = {}
    for partial in partials:
        for outcome in partial.outcomes:
            by_index[outcome.index] = outcome  # a re-run chunk replaces, never adds
        for failure in partial.failures:
            failures[(failure.path, failure.samples)] = failure
    wanted = {s.index for s in listed}
    outcomes = tuple(by_index[i] for i in sorted(by_index) if i in wanted)
    return outcomes, tuple(failures[k] for k in sorted(failures))


def chunks(specs: Sequence[SampleSpec], size: int) -> list[tuple[SampleSpec, ...]]:
    """Contiguous chunks; the samples of one recording (DVS Gesture ranges) stay in one chunk, read once."""
    out: list[list[SampleSpec]] = []
    for spec in specs:
        if out and (len(out[-1]) < size or out[-1][-1].path == spec.path):
            out[-1].append(spec)
        else:
            out.append([spec])
    return [tuple(c) for c in out]


def evaluate(model_path: str | Path, dataset: str | Path | Dataset, setup: EvalSetup | None = None, *,
             layout: str = "auto", labels_csv: str | Path | None = None, max_samples: int | None = None,
             shard: tuple[int, int] | None = None, engine: str = "local", address: str | None = None,
             workers: int = 2, chunk_size: int | None = None,
             progress: Callable[[int, int], None] | None = None, **options: Any) -> EvalResult:
    """Evaluate a bundle folder or checkpoint on a dataset folder (see the module docstring).

    `setup` (or `options`, EvalSetup fields: binning, runtime, device, batch_size, fast_math,
    targets, host, transforms...) says how; `progress(done, total)` is called as samples finish.
    """
    if engine not in ENGINES:
        raise EvalError(f"engine {engine!r}; choose from {ENGINES}")
    if setup is None:
        if "binning" not in options:
            raise EvalError("no binning given: pass binning=Binning(dt_us=...) or Binning(n_time_bins=...)")
        setup = EvalSetup(model_path=str(model_path), **options)
    data = dataset if isinstance(dataset, Dataset) else discover(dataset, layout=layout, labels_csv=labels_csv)
    selected = data.select(max_samples=max_samples, shard=shard)
    pieces = chunks(selected, chunk_size or setup.batch_size * 4)
    start = time.perf_counter()
    if engine == "local":
        partials = []
        done = 0
        for piece in pieces:
            partials.append(evaluate_share(setup, piece))
            done += len(piece)
            if progress is not None:
                progress(done, len(selected))
        n_workers = 1
    else:
        from neurodeploy.scale_out import run_on_dask

        partials, n_workers = run_on_dask(setup, pieces, address=address, workers=workers, progress=progress,
                                          total=len(selected))
    wall = time.perf_counter() - start
    outcomes, failures = merge(partials, selected)
    failures = tuple(sorted(failures + tuple(Failure(path, (), reason) for path, reason in data.unlisted),
                            key=lambda f: (f.path, f.samples)))
    num_classes = _model_classes(setup.model_path)
    setup_dict = {"model": setup.model_path, "binning": setup.binning.describe(), "runtime": setup.runtime,
                  "device": setup.device, "batch_size": setup.batch_size, "fast_math": setup.fast_math,
                  "targets": list(setup.targets), "host": setup.host,
                  "transforms": [getattr(t, "__name__", repr(t)) for t in setup.transforms]}
    return EvalResult(str(data.root), data.layout, setup_dict, num_classes, outcomes, failures, len(selected),
                      sum(p.compute_s for p in partials), sum(p.model_s for p in partials),
                      sum(p.read_s for p in partials), wall, engine, n_workers)


def _model_classes(model_path: str) -> int:
    path = Path(model_path)
    if path.is_dir():
        from neurodeploy.bundle import load_bundle

        return load_bundle(path).config.num_classes
    from neurodeploy.model.mamba_spike.checkpoint import load_checkpoint

    return load_checkpoint(path)[1].num_classes


def write_eval(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """eval.json (everything), eval_samples.csv (one row per sample), eval.md and eval.html (summary tables)."""
    from neurodeploy.eval_tables import write_csv, write_html, markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "eval.json", "csv": out / "eval_samples.csv", "markdown": out / "eval.md",
             "html": out / "eval.html"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    write_csv(result, paths["csv"])
    paths["markdown"].write_text(markdown(result), encoding="utf-8")
    write_html(result, paths["html"])
    return paths
