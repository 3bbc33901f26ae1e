"""The HTML report: the Markdown tables rendered as HTML tables, and the plots as embedded PNGs.

The PNGs are embedded as base64 (the page is one self-contained file) and also written beside it.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from neurodeploy.report.plots import write_plots

CAPTIONS = {
    "firing_rate": "Firing rate per layer",
    "spikes_over_time": "Spikes over time",
    "synaptic_ops": "Synaptic operations per layer",
    "energy": "Energy per layer and target (estimate)",
    "latency_histogram": "Latency histogram (measured)",
}


def _markdown_to_html(text: str) -> str:
    """The small Markdown subset `tables.markdown` writes: headings, paragraphs, pipe tables, **bold**."""
    out, table = [], []

    def flush_table():
        if not table:
            return
        rows = [[html.escape(c.strip()) for c in line.strip().strip("|").split("|")] for line in table]
        head, body = rows[0], rows[2:]
        out.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr></thead><tbody>"
                   + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
                   + "</tbody></table>")
        table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            escaped = html.escape(line)
            while "**" in escaped:
                escaped = escaped.replace("**", "<strong>", 1).replace("**", "</strong>", 1)
            out.append(f"<p>{escaped}</p>")
    flush_table()
    return "\n".join(out)


# wide tables scroll inside their own box and images shrink to the page: nothing overflows the page
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;margin:1em 0;font-size:0.9em;display:block;max-width:100%;overflow-x:auto}"
         "td,th{border:1px solid #ccc;padding:3px 6px;overflow-wrap:anywhere}th{background:#eee}"
         "figure{display:inline-block;margin:1em;max-width:100%}img{max-width:100%;height:auto}"
         "p{overflow-wrap:anywhere}")


def write_html(report, path: Path, preamble_markdown: str = "") -> dict[str, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, path.parent, prefix=f"{path.stem}_")
    figures = []
    for name, png in plots.items():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        figures.append(f'<figure id="{name}"><img alt="{html.escape(CAPTIONS[name])}" '
                       f'src="data:image/png;base64,{data}"><figcaption>{html.escape(CAPTIONS[name])} '
                       f'(<a href="{png.name}">{png.name}</a>)</figcaption></figure>')
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>neurodeploy report</title>"
            f"<style>{STYLE}</style></head><body>\n"
            f"{_markdown_to_html(preamble_markdown + report.to_markdown())}\n<h2>Plots</h2>\n"
            + "\n".join(figures) + "\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return {"html": path, **{f"plot_{name}": png for name, png in plots.items()}}
