"""`neurodeploy demo`: the whole toolkit on the shipped assets, in under a minute on 2 cores.

export the shipped checkpoint -> bundle; stream the shipped labelled recording through the
chosen front-end runtime (native by default, Lava when asked) and backbone runtime (native by
default, onnxruntime or torch when asked);
print predictions vs labels, spikes per sample and latency; write the energy report.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from neurodeploy.errors import MissingFileError

ASSET_CHECKPOINT = "mamba_spike_synthetic.safetensors"
ASSET_RECORDING = "synthetic_test_10.npz"


def asset_path(name: str) -> Path:
    path = Path(str(resources.files("neurodeploy") / "assets" / name))
    if not path.is_file():
        raise MissingFileError(f"{path}: shipped asset missing; reinstall neurodeploy (see neurodeploy/assets/README.md)")
    return path


def run_demo(out_dir: Path, *, frontend: str = "native", backbone: str = "native", live: bool = False,
             echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    from neurodeploy.bundle import ExportOptions, export
    from neurodeploy.events.labels import labels_path_for, read_label_file
    from neurodeploy.model.mamba_spike.checkpoint import checkpoint_metadata
    from neurodeploy.realtime import describe
    from neurodeploy.report import build_report, write_report
    from neurodeploy.report.from_events import frames_of_samples, record_frontend_run
    from neurodeploy.stream import stream

    say = echo or (lambda line: None)
    started = time.perf_counter()
    checkpoint, recording = asset_path(ASSET_CHECKPOINT), asset_path(ASSET_RECORDING)
    meta = checkpoint_metadata(checkpoint)
    dt_us = int(meta["dt_us"])
    artifacts = ("nir", "netx", "onnx") if frontend == "lava" else ("nir", "onnx")
    say(f"exporting {checkpoint.name} (recorded test accuracy {float(meta['accuracy']):.1%}) to {out_dir / 'bundle'}")
    bundle = export(checkpoint, out_dir / "bundle", ExportOptions(dt_us=dt_us, artifacts=artifacts))
    for name, entry in bundle.manifest["artifacts"].items():
        say(f"  {name:22s} {entry['bytes']:>9,d} bytes")

    labels = read_label_file(labels_path_for(recording))
    say(f"streaming {recording.name} ({len(labels)} labelled samples, {dt_us} us bins) through "
        f"{frontend} front-end + {backbone} backbone" + (" in real time" if live else ""))
    results = []
    with stream(bundle, recording, frontend=frontend, backbone=backbone, labels=labels, realtime=live,
                live=live) as run:
        for r in run:
            results.append(r)
            say(f"  sample {r.index}: predicted {r.prediction}, label {r.label} {'ok' if r.correct else 'WRONG'}, "
                f"spikes {sum(r.spikes_per_layer.values()):,}, steps {r.n_steps}")
    summary = run.summary()
    lat = summary["step_latency_us"]
    say(f"accuracy {summary['accuracy']:.0%} ({sum(bool(r.correct) for r in results)}/{len(results)}); "
        f"per-step latency p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us; {describe(summary['real_time_factor'])}")

    frames, description = frames_of_samples(bundle, recording)
    record = record_frontend_run(bundle.frontend_runtime("nir"), frames, dt_s=dt_us / 1e6, name="nir")
    report = build_report(bundle.model(), record, targets=("loihi", "spinnaker2"), host="cpu", dt_s=dt_us / 1e6)
    from neurodeploy.report.provenance import measured_what

    paths = write_report(report, out_dir / "report",
                         measured_what(bundle, recording, frontend="nir", command="neurodeploy demo"))
    say(f"energy report ({description}): {paths['html']}")
    energy_per_sample_j = {target: report.total_energy_j(target) for target in ("loihi", "spinnaker2")}
    for target, joules in energy_per_sample_j.items():  # total_energy_j is already per sample: the report's figure
        say(f"  estimated energy per sample, front-end on {target} + backbone on cpu: "
            f"{joules * 1e6:.1f} uJ (estimate; sources in the report)")
    return {
        "bundle": str(bundle.directory),
        "frontend": frontend,
        "backbone": backbone,
        "samples": [r.to_dict() for r in results],
        "summary": summary,
        "recorded_accuracy": float(meta["accuracy"]),
        "report": {k: str(v) for k, v in paths.items()},
        "energy_per_sample_j": energy_per_sample_j,
        "seconds": time.perf_counter() - started,
    }
