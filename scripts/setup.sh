#!/usr/bin/env bash
# One-command setup: creates .venv in the repository and installs neurodeploy with every
# runtime it drives. Idempotent: when pyproject.toml and this script are unchanged since the
# last successful run it only checks the stamp and exits.
#
# Why a script and not just `pip install -e .`: lava-nc 0.10.0, lava-dl 0.6.0 and norse 1.1.0
# declare Python <3.11 / torch <2.4 / torchvision, none of which this toolkit can use (torch
# is pinned to the 2.13.0 CPU build, torchvision breaks beside it). pip cannot express
# "install without dependencies" in pyproject, so those three go in here with
# --no-deps --ignore-requires-python, and their real runtime dependencies are listed in
# pyproject.toml. `pip check` reports their stale pins; that is expected (README).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.neurodeploy-setup

want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/neurodeploy" ]; then
    echo "setup: .venv is up to date"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip
# torch first and pinned: any other torch request pulls a multi-GB CUDA build.
$PIP install --quiet "torch==2.13.0"
$PIP install --quiet -e ".[test,sanafe]"
$PIP install --quiet --no-deps --ignore-requires-python \
    "lava-nc==0.10.0" "lava-dl==0.6.0" "norse==1.1.0"
# Both lava wheels ship a top-level `tests` package into site-packages; it is their own test
# suite, not importable API, and it would shadow any project's `tests`. Remove it.
rm -rf "$VENV"/lib/python3*/site-packages/tests
# tonic is only a test oracle (ToFrame / Denoise semantics); its dependency tree (librosa,
# numba, ...) is not needed for the transforms we compare against. `import tonic` itself needs
# tqdm and requests (test extras) and importRosbag (pure Python, pinned here).
$PIP install --quiet --no-deps "tonic==1.7.0" "importRosbag==1.0.4"
# sinabs (Speck / DYNAP-CNN software model and memory maths, `neurodeploy targets`) declares
# samna (a chip-driver installer stub on PyPI, unusable) and nir<=1.0.4; neither is needed for
# the parts used here (sinabs.layers, validate_memory_speck, the discretisation maths).
$PIP install --quiet --no-deps "sinabs==3.1.3"
# Debian's chromium: the headless browser tests/test_report_browser.py opens the HTML report in.
# Only as root with apt (CI images); elsewhere the test is skipped with the reason.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
        || echo "setup: chromium not installed; the HTML report browser test will be skipped"
fi

"$VENV/bin/python" -c "import neurodeploy, neurodeploy.exporters, neurodeploy.runtimes; from neurodeploy.lava_compat import import_lava; import_lava()"
echo "$want" > "$STAMP"
echo "setup: done ($("$VENV/bin/neurodeploy" --version))"
