"""A reference-layout model (N-MNIST v1 front-end, MaxPool) is refused; with pool_rewrite
the export measures and reports the effect, and the numbers are checked independently."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from neurodeploy.exporters.nir import (PoolRewriteReport, UnsupportedLayerError, export_frontend,
                                       rewrite_max_pooling)
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.runtimes.nir import NIRFrontendRuntime



@pytest.fixture(scope="module")
def reference_model() -> MambaSpike:
    torch.manual_seed(0)
    config = dataclasses.replace(MambaSpikeConfig.nmnist_v1(), d_model=16, n_layers=1)
    return MambaSpike(config).eval()


@pytest.fixture(scope="module")
def sample() -> torch.Tensor:
    return torch.poisson(torch.full((6, 12, 2, 34, 34), 0.3), generator=torch.Generator().manual_seed(3))


def test_reference_layout_is_refused(reference_model):
    with pytest.raises(UnsupportedLayerError, match="MaxPool2d.*pool1.*pool_rewrite"):
        export_frontend(reference_model, 1e-3)


@pytest.mark.parametrize("rewrite", ["avg", "sum"])
def test_rewrite_report_matches_an_independent_measurement(reference_model, sample, rewrite):
    with pytest.warns(UserWarning, match=f"max pooling replaced by {rewrite} pooling"):
        graph = export_frontend(reference_model, 1e-3, pool_rewrite=rewrite, sample=sample)
    report = PoolRewriteReport.from_json(graph.metadata["pool_rewrite_report"])
    assert graph.nodes["pool1"].metadata["rewritten_from"] == "max"
    assert type(graph.nodes["pool2"]).__name__ == ("AvgPool2d" if rewrite == "avg" else "SumPool2d")

    rewritten = MambaSpike(dataclasses.replace(reference_model.config, pooling=rewrite)).eval()
    rewritten.load_state_dict(reference_model.state_dict())  # the same weights
    with torch.no_grad():
        before, after = reference_model.run(sample), rewritten.run(sample)
    assert report.spikes_before == {f"lif{k}": int(s.sum()) for k, s in enumerate(before.spikes, 1)}
    assert report.spikes_after == {f"lif{k}": int(s.sum()) for k, s in enumerate(after.spikes, 1)}
    changed = tuple(int(i) for i in torch.nonzero(before.logits.argmax(-1) != after.logits.argmax(-1)).flatten())
    assert report.changed_predictions == changed
    assert (report.n_samples, report.n_steps) == (6, 12)
    assert report.spikes_before != report.spikes_after  # max -> avg/sum does change spiking

    # and the exported graph runs exactly as the rewritten torch front-end
    runtime = NIRFrontendRuntime(graph)
    assert torch.equal(runtime.run(sample[:2, :6]), rewritten.spiking_frontend(sample[:2, :6])[0][-1])


def test_synthetic_sample_when_none_is_supplied(reference_model):
    frontend_only = reference_model.spiking_frontend
    _, report = rewrite_max_pooling(frontend_only, "avg")
    assert "synthetic" in report.sample and report.changed_predictions is None
    assert report.n_samples == 16 and report.n_steps == 30
