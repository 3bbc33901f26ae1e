import os
import sys

import pytest
import torch

# Lets tests and benchmarks import the plain reference implementation (tests/plain_reference.py).
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _single_thread_torch():
    # CI has 2 cores; one intra-op thread keeps parallel work predictable and fast for tiny models.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shipped_onnx_bundle(tmp_path_factory):
    """The shipped model exported with the ONNX backbone only (no NIR): a bundle that is quick to make."""
    from click.testing import CliRunner

    from neurodeploy.cli import main
    from neurodeploy.demo import ASSET_CHECKPOINT, asset_path

    out = tmp_path_factory.mktemp("shipped") / "bundle"
    result = CliRunner().invoke(main, ["export", str(asset_path(ASSET_CHECKPOINT)), "-o", str(out),
                                       "--artifacts", "onnx"])
    assert result.exit_code == 0, result.output
    return out
