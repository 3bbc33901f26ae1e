"""Export to NIR: layout, LIF time mapping, refusal of max pooling, and the file round trip."""
from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch

from neurodeploy.exporters.nir import UnsupportedLayerError, export_frontend
from neurodeploy.formats.nir_frontend import read_frontend, write_frontend
from neurodeploy.model import MambaSpike, MambaSpikeConfig

SMALL = dict(input_height=12, input_width=12, conv_channels=4, spiking_channels=6, d_model=16, n_layers=1)
PARAMETERS = {
    nir.Conv2d: ("weight", "bias", "stride", "padding", "dilation", "groups"),
    nir.SumPool2d: ("kernel_size", "stride", "padding"),
    nir.AvgPool2d: ("kernel_size", "stride", "padding"),
    nir.LIF: ("tau", "r", "v_leak", "v_threshold", "v_reset"),
    nir.Flatten: ("start_dim", "end_dim"),
}


def small_model(**overrides) -> MambaSpike:
    torch.manual_seed(0)
    return MambaSpike(MambaSpikeConfig.deployable(**{**SMALL, **overrides})).eval()


def graph_differences(a: nir.NIRGraph, b: nir.NIRGraph) -> list[str]:
    found = []
    if set(a.nodes) != set(b.nodes):
        return [f"nodes {sorted(a.nodes)} != {sorted(b.nodes)}"]
    if sorted(a.edges) != sorted(b.edges):
        found.append("edges differ")
    if a.metadata != b.metadata:
        found.append(f"graph metadata {a.metadata} != {b.metadata}")
    for name, node in a.nodes.items():
        other = b.nodes[name]
        if type(node) is not type(other):
            found.append(f"{name}: {type(node).__name__} != {type(other).__name__}")
            continue
        for side in ("input_type", "output_type"):
            x, y = getattr(node, side), getattr(other, side)
            if x.keys() != y.keys() or any(not np.array_equal(x[k], y[k]) for k in x):
                found.append(f"{name}.{side}: {x} != {y}")
        for field in PARAMETERS.get(type(node), ()):
            x, y = getattr(node, field), getattr(other, field)
            if not np.array_equal(np.asarray(x), np.asarray(y)) or np.asarray(x).dtype.kind != np.asarray(y).dtype.kind:
                found.append(f"{name}.{field} differs")
        if node.metadata != other.metadata:
            found.append(f"{name}.metadata {node.metadata} != {other.metadata}")
    return found


@pytest.mark.parametrize("overrides", [dict(recurrent=True), dict(pooling="avg", reset="subtract", reset_timing="delayed")])
def test_round_trip_file_gives_an_equal_graph(tmp_path, overrides):
    graph = export_frontend(small_model(**overrides), 1e-3)
    read = read_frontend(write_frontend(graph, tmp_path / "frontend.nir"))
    assert graph_differences(graph, read) == []
    # the comparison itself can fail: a changed weight is noticed
    read.nodes["conv2"].weight[0, 0, 0, 0] += 1.0
    assert graph_differences(graph, read) == ["conv2.weight differs"]


def test_layout_shapes_and_lif_time_mapping():
    model = small_model(recurrent=True, beta=0.75, threshold=0.5)
    dt = 2e-3
    graph = export_frontend(model, dt)
    assert graph.metadata["dt"] == dt
    shapes = {name: tuple(node.output_type["output"]) for name, node in graph.nodes.items()}
    assert shapes["conv1"] == (4, 12, 12) and shapes["pool1"] == (4, 6, 6) and shapes["lif2"] == (4, 3, 3)
    assert shapes["lif3"] == (6, 3, 3) and shapes["flatten"] == (54,) and shapes["output"] == (54,)
    assert tuple(graph.nodes["input"].input_type["input"]) == (2, 12, 12)
    assert graph.nodes["flatten"].start_dim == 0  # no batch dimension in NIR shapes
    lif = graph.nodes["lif1"]
    assert np.allclose(lif.tau, dt / (1 - 0.75)) and np.allclose(lif.r, lif.tau / dt)
    assert np.all(lif.v_leak == 0) and np.all(lif.v_threshold == 0.5)
    # the discrete decay is recovered from tau and dt
    assert np.allclose(1 - dt / lif.tau, 0.75, atol=1e-6)
    assert lif.metadata == {"dt": dt, "beta": 0.75, "reset": "zero", "reset_timing": "immediate", "compare": "greater"}
    assert graph.nodes["rec2"].metadata == {"recurrent_of": "lif2", "delay_steps": 1, "active_from_step": 1}
    assert ("lif2", "rec2") in graph.edges and ("rec2", "lif2") in graph.edges
    assert graph.nodes["input"].metadata["graded_input"] is True
    assert graph.nodes["pool1"].metadata == {"pool_input": "current"}
    assert np.array_equal(graph.nodes["conv3"].weight, model.spiking_frontend.conv3.weight.detach().numpy())
    assert np.array_equal(graph.nodes["rec3"].bias, model.spiking_frontend.recurrent3.bias.detach().numpy())


def test_non_leaky_neuron_is_written_as_if():
    graph = export_frontend(small_model(beta=1.0), 1e-3)
    assert isinstance(graph.nodes["lif1"], nir.IF) and np.allclose(graph.nodes["lif1"].r, 1e3)


def test_max_pooling_is_refused_naming_the_layers_and_ways_out():
    with pytest.raises(UnsupportedLayerError) as error:
        export_frontend(small_model(pooling="max"), 1e-3)
    message = str(error.value)
    for words in ("MaxPool2d", "pool1", "conv2", "pool_rewrite='avg' or 'sum'", "deployable", "TorchFrontendRuntime"):
        assert words in message


@pytest.mark.parametrize("dt", [0, -1e-3, math.inf, float("nan")])
def test_bad_dt_is_refused(dt):
    with pytest.raises(ValueError, match="dt_s"):
        export_frontend(small_model(), dt)


def test_pool_rewrite_on_a_model_without_max_pooling_is_refused():
    with pytest.raises(ValueError, match="nothing to rewrite|leave pool_rewrite=None"):
        export_frontend(small_model(), 1e-3, pool_rewrite="avg")
