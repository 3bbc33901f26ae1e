"""`neurodeploy demo` end to end on the shipped assets."""
import json
import subprocess
import sys

import pytest

from click.testing import CliRunner

from neurodeploy.bundle import load_bundle
from neurodeploy.cli import main


def test_demo_end_to_end(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    samples = outcome["samples"]
    assert len(samples) == 10
    accuracy = sum(s["prediction"] == s["label"] for s in samples) / len(samples)
    # the recorded accuracy of the checkpoint (held-out test set); the shipped samples are from it
    assert accuracy >= outcome["recorded_accuracy"] - 0.1
    assert outcome["summary"]["accuracy"] == accuracy
    bundle = load_bundle(outcome["bundle"])  # hashes verified
    assert bundle.has("frontend_nir") and bundle.has("backbone_step")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    html = (tmp_path / "report" / "report.html").read_text()
    assert "estimate" in json.dumps(report).lower() and html.count("data:image/png;base64,") >= 4
    # the demo prints the report's energy per sample, not that figure divided by the samples again
    assert outcome["energy_per_sample_j"] == {t: report["energy"]["total_per_sample_j"][t]
                                              for t in ("loihi", "spinnaker2")}
    # the report counted the same front-end spikes the stream saw (NIR runtime, same frames)
    assert all(sum(s["spikes_per_layer"].values()) > 0 for s in samples)
    assert outcome["seconds"] < 120


@pytest.mark.slow
@pytest.mark.lava
def test_lava_fixed_point_agrees_99_percent_on_the_trained_model(tmp_path):
    """Issue 5's figure on a trained network: bit-accurate Loihi vs the float front-end, per layer."""
    from neurodeploy.bundle import ExportOptions, export
    from neurodeploy.demo import ASSET_CHECKPOINT, ASSET_RECORDING, asset_path

    bundle = export(asset_path(ASSET_CHECKPOINT), tmp_path / "bundle", ExportOptions(dt_us=10_000))
    assert bundle.has("frontend_netx")
    # A fresh interpreter: Lava forks its runtime processes, and forking a process in which earlier
    # tests started threads (onnxruntime pools, live-source readers) can deadlock the child.
    done = subprocess.run([sys.executable, "-c", "from neurodeploy.cli import main; main()", "verify",
                           str(tmp_path / "bundle"), str(asset_path(ASSET_RECORDING)), "--lava", "--steps", "29",
                           "--samples", "3", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    agreement = json.loads(done.stdout)["frontend"]["lava"]["agreement_per_layer"]
    print("Lava fixed_pt vs float torch agreement per layer:", agreement)
    assert set(agreement) == {"lif1", "lif2", "lif3"}
    assert all(a >= 0.99 for a in agreement.values()), agreement
