"""The NIR runtime (our node map on nirtorch) against the torch front-end: identical spikes."""
from __future__ import annotations

import itertools

import pytest
import torch

from neurodeploy.exporters.nir import export_frontend
from neurodeploy.formats.nir_frontend import read_frontend, write_frontend
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.runtimes.contract import FrontendRuntime
from neurodeploy.runtimes.nir import NIRFrontendRuntime, UnsupportedGraphError
from neurodeploy.runtimes.torch import TorchFrontendRuntime

SMALL = dict(input_height=16, input_width=16, conv_channels=8, spiking_channels=8, d_model=16, n_layers=1)
BATCH, STEPS = 2, 20
VARIANTS = list(itertools.product(["sum", "avg"], [False, True], ["subtract", "zero"], ["delayed", "immediate"]))


def frames(rate: float = 0.3, seed: int = 1) -> torch.Tensor:
    return torch.poisson(torch.full((BATCH, STEPS, 2, 16, 16), rate), generator=torch.Generator().manual_seed(seed))


def model(**config) -> MambaSpike:
    torch.manual_seed(0)
    m = MambaSpike(MambaSpikeConfig(**{**SMALL, **config})).eval()
    if config.get("pooling") == "avg":
        # averaging quarters the currents; scale the first convs so that every layer spikes
        with torch.no_grad():
            m.spiking_frontend.conv2.weight.mul_(3.0)
            m.spiking_frontend.conv3.weight.mul_(3.0)
    return m


@pytest.mark.parametrize("pooling,recurrent,reset,timing", VARIANTS)
def test_nir_file_runtime_matches_torch_at_every_step_and_layer(tmp_path, pooling, recurrent, reset, timing):
    m = model(pooling=pooling, recurrent=recurrent, reset=reset, reset_timing=timing)
    path = write_frontend(export_frontend(m, 1e-3), tmp_path / "frontend.nir")
    runtime, reference = NIRFrontendRuntime(path), TorchFrontendRuntime(m)
    assert isinstance(runtime, FrontendRuntime) and isinstance(reference, FrontendRuntime)
    x = frames()
    runtime.reset(BATCH)
    reference.reset(BATCH)
    for t in range(STEPS):
        out, expected = runtime.step(x[:, t]), reference.step(x[:, t])
        assert torch.equal(out, expected), f"step {t}: last-layer spikes differ"
        for name in reference.layer_names:
            assert torch.equal(runtime.layer_spikes[name], reference.layer_spikes[name]), f"step {t}, {name}"
    counts = reference.spike_counts
    assert runtime.spike_counts == counts
    # every layer spikes, and not everywhere: the comparison is not of empty or saturated maps
    sizes = {n: BATCH * STEPS * s.numel() // BATCH for n, s in reference.layer_spikes.items()}
    assert all(0 < counts[n] < sizes[n] for n in counts), counts
    # the offline torch path (convolutions batched over time) agrees too
    offline, _ = m.spiking_frontend(x)
    assert torch.equal(runtime.run(x), offline[-1])


def test_recurrence_is_inactive_at_the_first_step():
    """The recurrent bias must not act at t = 0: a graph whose rec convs have a huge bias
    gives the same first-step spikes as the feed-forward model, and different later ones."""
    m = model(pooling="sum", recurrent=True, reset="zero", reset_timing="immediate")
    with torch.no_grad():
        for k in (1, 2, 3):
            getattr(m.spiking_frontend, f"recurrent{k}").bias.fill_(5.0)
    runtime = NIRFrontendRuntime(export_frontend(m, 1e-3))
    feedforward = TorchFrontendRuntime(MambaSpike(m.config.__class__(**{**m.config.to_dict(), "recurrent": False})))
    feedforward.frontend.load_state_dict({k: v for k, v in m.spiking_frontend.state_dict().items() if "recurrent" not in k})
    x = frames()
    runtime.reset(BATCH)
    feedforward.reset(BATCH)
    assert torch.equal(runtime.step(x[:, 0]), feedforward.step(x[:, 0]))
    assert not torch.equal(runtime.step(x[:, 1]), feedforward.step(x[:, 1]))


def test_reset_starts_a_new_sample():
    runtime = NIRFrontendRuntime(export_frontend(model(pooling="sum", recurrent=True), 1e-3))
    x = frames()
    first = runtime.run(x)
    assert torch.equal(runtime.run(x), first)
    runtime.run(x[:, :5])
    # counts restart at reset: only the 5 steps of the last run are counted
    assert runtime.spike_counts["lif3"] == int(first[:, :5].sum().item())


def test_metadata_the_runtime_cannot_honour_is_refused_by_name():
    graph = export_frontend(model(pooling="sum"), 1e-3)
    graph.nodes["lif2"].metadata["compare"] = "greater_equal"
    with pytest.raises(UnsupportedGraphError, match="'lif2'.*compare"):
        NIRFrontendRuntime(graph)


def test_a_graph_without_dt_is_refused_unless_dt_is_given():
    graph = export_frontend(model(pooling="sum"), 1e-3)
    graph.metadata.pop("dt")
    for name in ("lif1", "lif2", "lif3"):
        graph.nodes[name].metadata = {}
    with pytest.raises(UnsupportedGraphError, match="no dt"):
        NIRFrontendRuntime(graph)
    # NIR's own semantics (reset to 0 in the spiking step) with the right dt = the zero/immediate model
    m = model(pooling="sum", reset="zero", reset_timing="immediate")
    graph = export_frontend(m, 1e-3)
    graph.metadata.pop("dt")
    for name in ("lif1", "lif2", "lif3"):
        graph.nodes[name].metadata = {}
    runtime, reference = NIRFrontendRuntime(graph, dt_s=1e-3), TorchFrontendRuntime(m)
    x = frames()
    # without the exact beta the decay is 1 - dt/tau in float64: equal to beta up to 1e-8
    assert torch.equal(runtime.run(x), reference.run(x))
