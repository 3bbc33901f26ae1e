"""A report of a seeded N-MNIST-size model on a generated recording: JSON, CSV, Markdown, HTML with PNG plots.

No browser is installed in CI; the test proves the plots render by checking that every PNG is a
valid image of the expected size, written beside the HTML and embedded in it.
"""
from __future__ import annotations

import base64
import csv
import json
import re
import struct

import numpy as np
import pytest
import torch

from neurodeploy.events.binning import to_frames_n_bins
from neurodeploy.events.synthetic import make_nmnist_like
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.report import build_report, write_report
from neurodeploy.report.plots import PLOT_DPI

N_BINS = 40  # the reference uses 300; 40 keeps the test fast and the counts identical in kind
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def nmnist_report(tmp_path_factory):
    recording, _ = make_nmnist_like(1, seed=3)[0]
    frames = to_frames_n_bins(recording.events, recording.sensor_size, N_BINS)
    dt_s = recording.duration_us / N_BINS * 1e-6
    torch.manual_seed(0)
    model = MambaSpike(MambaSpikeConfig())  # N-MNIST size: 2x34x34, 1.02 M parameters
    frames = torch.from_numpy(frames.astype(np.float32))[None]
    report = build_report(model, frames, targets=("loihi", "spinnaker2", "spinnaker", "cmos45nm"), host="cpu",
                          dt_s=dt_s)
    out = tmp_path_factory.mktemp("report")
    return model, frames, report, write_report(report, out)


def test_counts_come_from_the_run(nmnist_report):
    model, frames, report, _ = nmnist_report
    assert report.parameters == 1_020_234 and report.steps == N_BINS
    with torch.no_grad():
        offline = model.run(frames)
    # the stepped, timed run saw the same spikes as the offline run
    for layer, spikes in zip(report.frontend, offline.spikes):
        assert layer.output_spikes == spikes.sum().item()
        assert sum(layer.spikes_per_step) == pytest.approx(layer.output_spikes)
    first = report.frontend[0]
    assert first.input_events == frames.sum().item() > 0
    assert first.spikes_per_second == pytest.approx(first.output_spikes / (N_BINS * report.dt_s))
    assert report.latency is not None and len(report.latency.step_latency_s) == N_BINS


def test_files_say_estimate_version_and_sources(nmnist_report):
    _, _, report, paths = nmnist_report
    data = json.loads(paths["json"].read_text())
    assert data["table_version"] == report.table_version
    for estimate in data["energy"]["frontend"] + [data["energy"]["backbone"]]:
        assert estimate["estimate"] is True and estimate["table_version"]
        for term in estimate["terms"]:
            assert (term["energy_j"] is None) or term["source"]
    assert set(data["energy"]["total_per_sample_j"]) == {"loihi", "spinnaker2", "spinnaker", "cmos45nm"}
    assert data["latency"]["on_chip"][0]["method"] == "unknown"

    rows = list(csv.DictReader(paths["csv"].open()))
    energy_rows = [r for r in rows if r["section"].startswith("energy") and r["value"] != ""]
    assert energy_rows and all("estimate" in r["source"] and "v2026.1" in r["source"] for r in energy_rows)
    assert {r["metric"] for r in rows if r["section"] == "frontend"} >= {
        "effective_acs", "effective_macs", "dense_ops", "membrane_updates", "activation_sparsity", "footprint_bytes"}

    md = paths["markdown"].read_text()
    assert "estimates" in md and report.table_version in md and "Davies et al." in md
    assert md.count("| layer | neurons") == 1 and "unknown" in md


def test_html_embeds_rendered_plots(nmnist_report):
    _, _, report, paths = nmnist_report
    html = paths["html"].read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    names = ("firing_rate", "spikes_over_time", "synaptic_ops", "energy", "latency_histogram")
    assert len(embedded) == len(names)
    for name, b64 in zip(names, embedded):
        png = paths[f"plot_{name}"]
        data = png.read_bytes()
        assert base64.b64decode(b64) == data  # the page shows exactly the file beside it
        width, height = png_size(data)
        assert width >= 5 * PLOT_DPI and height >= 3 * PLOT_DPI
        assert len(data) > 10_000  # axes, bars and text, not a blank canvas
        assert f'href="{png.name}"' in html
    assert "<table>" in html and "estimate" in html.lower()
