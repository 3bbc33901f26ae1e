"""The tables of an evaluation: per-sample CSV, Markdown summary, and the same as an HTML page."""
from __future__ import annotations

import csv
import html
from pathlib import Path


def write_csv(result, path: Path) -> Path:
    names = result.layer_names
    targets = result.setup["targets"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "sample", "label", "prediction", "correct", "steps", "events",
                         *[f"spikes_{n}" for n in names], *[f"synops_{n}" for n in names], "backbone_macs",
                         *[f"energy_j_{t}" for t in targets], "exact_prediction"])
        for o in result.outcomes:
            correct = None if o.label is None else o.prediction == o.label
            writer.writerow([o.index, o.name, o.label, o.prediction, correct, o.n_steps, o.n_events,
                             *o.spikes_per_layer, *o.synops_per_layer, o.backbone_macs, *o.energy_j,
                             o.exact_prediction])
    return path


def _fmt(value, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


def sections(result) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table, shared by Markdown and HTML."""
    s = result.summary()
    overview = [
        ["dataset", f"{result.dataset} ({result.layout})"],
        ["model / runtime", f"{result.setup['model']} / {result.setup['runtime']} on {result.setup['device']}"],
        ["binning", result.setup["binning"]],
        ["samples", f"{s['samples_evaluated']} evaluated of {s['samples_listed']} ({s['samples_failed']} failed)"],
        ["accuracy", _fmt(s["accuracy"], ".2%") if s["accuracy"] is not None else "n/a (no labels)"],
        ["throughput", f"{_fmt(s['throughput_samples_per_s'], '.1f')} samples/s of the runtime; "
                       f"{_fmt(s['with_counting_samples_per_s'], '.1f')} with counting; "
                       f"{_fmt(s['wall_samples_per_s'], '.1f')} wall ({result.engine}, {result.workers} worker(s))"],
        ["mean steps per sample", _fmt(s["mean_steps"], ".1f")],
    ]
    if s["fast_math_prediction_agreement"] is not None:
        overview.append(["fast-math prediction agreement", _fmt(s["fast_math_prediction_agreement"], ".2%")])
    layers = [[name, _fmt(s["spikes_per_sample"][name]), _fmt(s["synops_per_sample"][name])]
              for name in result.layer_names]
    energy = [[t, _fmt(j)] for t, j in s["energy_j_per_sample"].items()]
    classes = [[str(k), _fmt(a, ".2%") if a is not None else "n/a", str(sum(row))]
               for k, (a, row) in enumerate(zip(s["per_class_accuracy"], s["confusion_matrix"]))]
    confusion = [[str(k), *map(str, row)] for k, row in enumerate(s["confusion_matrix"])]
    failures = [[f.path, str(len(f.samples)), f.reason] for f in result.failures]
    return [
        ("Overview", ["", ""], overview),
        ("Per layer, mean per sample", ["layer", "spikes", "SynOps (effective ACs + MACs)"], layers),
        ("Energy per sample (estimate: front-end on target + backbone on " + result.setup["host"] + ")",
         ["target", "J"], energy),
        ("Per class", ["class", "accuracy", "samples"], classes),
        ("Confusion matrix (rows: label, columns: prediction)",
         ["label", *map(str, range(result.num_classes))], confusion),
        ("Recordings that could not be evaluated", ["recording", "samples", "reason"], failures),
    ]


def markdown(result) -> str:
    lines = ["# Evaluation", "", result.note, ""]
    for title, header, rows in sections(result):
        lines += [f"## {title}", ""]
        if not rows:
            lines += ["none", ""]
            continue
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def write_html(result, path: Path) -> Path:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>neurodeploy eval</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>",
             "<h1>Evaluation</h1>", f"<p>{html.escape(result.note)}</p>"]
    for title, header, rows in sections(result):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if not rows:
            parts.append("<p>none</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
