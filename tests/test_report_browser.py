"""The HTML report in a real headless browser (Debian's chromium, installed by scripts/setup.sh):
every plot loads, nothing overflows the page, and the page says what it measured."""
import html
import json
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from neurodeploy import __version__
from neurodeploy.cli import main
from neurodeploy.demo import ASSET_RECORDING, asset_path

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)

CHECK = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const width = document.documentElement.clientWidth;
  const outside = [...document.querySelectorAll('body > *, figure, img, h1, h2, p')]
    .filter(e => e.getBoundingClientRect().right > width + 1).map(e => e.tagName + (e.id ? '#' + e.id : ''));
  const pre = document.createElement('pre');
  pre.id = 'check';
  pre.textContent = JSON.stringify({images: images.length, broken: broken, outside: outside,
                                    scrollWidth: document.documentElement.scrollWidth, width: width});
  document.body.appendChild(pre);
});
</script></body>"""


@pytest.fixture(scope="module")
def report_dir(shipped_onnx_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(main, ["report", str(shipped_onnx_bundle), str(asset_path(ASSET_RECORDING)),
                                       "--max-samples", "2", "-o", str(out), "--target", "loihi",
                                       "--target", "spinnaker2"])
    assert result.exit_code == 0, result.output
    return out


def test_report_names_what_it_measured(report_dir, shipped_onnx_bundle):
    page = (report_dir / "report.html").read_text()
    assert "What was measured" in page
    for value in (str(shipped_onnx_bundle), str(asset_path(ASSET_RECORDING)), "neurodeploy safetensors",
                  "neurodeploy report", __version__):
        assert html.escape(value) in page, value
    provenance = json.loads((report_dir / "report.json").read_text())["provenance"]
    assert provenance["input_transforms"] == "none" and provenance["dt_us"] == 10_000


@pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH (scripts/setup.sh installs Debian's chromium "
                                            "with apt-get when it runs as root)")
@pytest.mark.parametrize("width", [1280, 700])
def test_report_in_a_headless_browser(report_dir, tmp_path, width):
    page = (report_dir / "report.html").read_text()
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", CHECK))
    done = subprocess.run([BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--window-size={width},900", "--virtual-time-budget=10000", "--dump-dom",
                           checked.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="check">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    result = json.loads(html.unescape(found.group(1)))
    assert result["images"] == page.count("data:image/png;base64,") >= 4
    assert result["broken"] == []
    assert result["outside"] == [] and result["scrollWidth"] <= result["width"], result


def test_every_legend_sits_outside_the_data(shipped_onnx_bundle, tmp_path, monkeypatch):
    from neurodeploy.bundle import load_bundle
    from neurodeploy.report import build_report
    from neurodeploy.report import plots
    from neurodeploy.report.from_events import frames_of_samples, record_frontend_run

    bundle = load_bundle(shipped_onnx_bundle)
    frames, _ = frames_of_samples(bundle, asset_path(ASSET_RECORDING), max_samples=2)
    record = record_frontend_run(bundle.frontend_runtime("torch"), frames, dt_s=bundle.dt_us / 1e6, name="torch")
    report = build_report(bundle.model(), record, targets=("loihi", "spinnaker2"), host="cpu", dt_s=bundle.dt_us / 1e6)
    checked = []
    save = plots._save

    def check_then_save(fig, path):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None:
                assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1, path.name
                checked.append(path.name)
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", check_then_save)
    plots.write_plots(report, tmp_path)
    assert len(checked) == 4  # spikes over time, synaptic ops, energy, latency
