"""Import of NIR graphs written by other tools (built here the way snnTorch's exporter writes
them) and by us, into the toolkit's SpikingFrontend, with parity."""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from neurodeploy.exporters.nir import export_frontend
from neurodeploy.formats.nir_frontend import read_frontend, write_frontend
from neurodeploy.exporters.nir_import import import_frontend
from neurodeploy.model import MambaSpike, MambaSpikeConfig, SpikingFrontend
from neurodeploy.runtimes.nir import UnsupportedGraphError

SNNTORCH_DT = 1e-4  # hard-coded in snntorch/export_nir.py
SIZE = 16


def frames() -> torch.Tensor:
    return torch.poisson(torch.full((2, 30, 2, SIZE, SIZE), 0.5), generator=torch.Generator().manual_seed(1))


def snntorch_like_graph(frontend: SpikingFrontend, beta: float) -> nir.NIRGraph:
    """What snntorch.export_to_nir writes for Conv2d -> AvgPool2d -> Leaky (x3) -> Flatten:
    0-d LIF parameters from `module.beta.numpy()`, tau = dt/(1-beta), r = tau/dt, no metadata
    and no dt, Conv2d with input_shape None, AvgPool2d with an int kernel, type_check off."""

    def conv(c):
        return nir.Conv2d(input_shape=None, weight=c.weight.detach().numpy(), stride=c.stride, padding=c.padding,
                          dilation=c.dilation, groups=c.groups, bias=c.bias.detach().numpy())

    def leaky():
        b, vthr = np.array(beta, dtype=np.float32), np.array(1.0, dtype=np.float32)
        tau = SNNTORCH_DT / (1 - b)
        return nir.LIF(tau=tau, v_threshold=vthr, v_leak=np.zeros_like(b), r=tau / SNNTORCH_DT)

    def pool():
        return nir.AvgPool2d(kernel_size=2, stride=2, padding=(0, 0))

    nodes = {"input": nir.Input(input_type=np.array([1, 2, SIZE, SIZE])),  # with the traced batch of 1
             "0": conv(frontend.conv1), "1": pool(), "2": leaky(), "3": conv(frontend.conv2), "4": pool(),
             "5": leaky(), "6": conv(frontend.conv3), "7": leaky(),
             "8": nir.Flatten(input_type=None, start_dim=0, end_dim=-1), "output": nir.Output(output_type=None)}
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), type_check=False)


def reference(**overrides) -> SpikingFrontend:
    torch.manual_seed(0)
    config = MambaSpikeConfig(input_height=SIZE, input_width=SIZE, conv_channels=8, spiking_channels=8, **overrides)
    frontend = SpikingFrontend(config).eval()
    with torch.no_grad():
        frontend.conv2.weight.mul_(3.0)
        frontend.conv3.weight.mul_(3.0)
    return frontend


def test_snntorch_graph_imports_with_identical_spikes():
    beta = float(np.float32(0.9))  # snnTorch keeps beta as a float32 tensor
    ref = reference(pooling="avg", beta=beta, reset="subtract", reset_timing="delayed")
    graph = snntorch_like_graph(ref, beta)
    imported, config = import_frontend(graph, writer="snntorch")
    assert (config.pooling, config.reset, config.reset_timing, config.recurrent) == ("avg", "subtract", "delayed", False)
    assert (config.input_channels, config.input_height, config.conv_channels, config.spiking_channels) == (2, SIZE, 8, 8)
    assert abs(config.beta - 0.9) < 1e-7 and config.threshold == 1.0
    x = frames()
    expected, _ = ref(x)
    got, _ = imported(x)
    for layer, (a, b) in enumerate(zip(expected, got), 1):
        assert a.sum() > 0, f"lif{layer} never spikes: the comparison would be empty"
        assert torch.equal(a, b), f"lif{layer} spikes differ"


def test_a_graph_without_dt_is_refused_with_the_writers_conventions():
    graph = snntorch_like_graph(reference(pooling="avg"), 0.9)
    with pytest.raises(UnsupportedGraphError, match=r"no dt; pass dt_s=.*1e-3.*1e-4"):
        import_frontend(graph)
    # read with another writer's dt the decays change: norse's 1e-3 s is longer than snnTorch's
    # tau (1e-3 s at beta 0.9 would give beta = 0, rounding below it), so it is refused ...
    with pytest.raises(UnsupportedGraphError, match="node '2': beta = 1 - dt/tau"):
        import_frontend(graph, writer="norse")
    # ... and a shorter dt silently would be a different model: why dt must be stated
    # (its r = tau/1e-4 then no longer makes r*dt/tau = 1, and the folding is warned about)
    with pytest.warns(UserWarning, match=r"r\*dt/tau = 0.1;"):
        _, config = import_frontend(graph, dt_s=1e-5)
    assert abs(config.beta - 0.99) < 1e-6


def test_own_graph_round_trips_through_a_file_into_the_same_frontend(tmp_path):
    torch.manual_seed(0)
    model = MambaSpike(MambaSpikeConfig.deployable(recurrent=True, beta=0.8, input_height=SIZE, input_width=SIZE,
                                                   conv_channels=4, spiking_channels=6, d_model=16, n_layers=1))
    path = write_frontend(export_frontend(model, 1e-3), tmp_path / "frontend.nir")
    frontend, config = import_frontend(path)
    assert config == model.config
    for key, value in model.spiking_frontend.state_dict().items():
        assert torch.equal(frontend.state_dict()[key], value), key


def test_layers_outside_the_family_are_refused_by_name():
    graph = snntorch_like_graph(reference(pooling="avg"), 0.9)
    graph.nodes["1"] = nir.AvgPool2d(kernel_size=np.array([3, 3]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    with pytest.raises(UnsupportedGraphError, match="node '1': pooling kernel"):
        import_frontend(graph, writer="snntorch")
    graph = snntorch_like_graph(reference(pooling="avg"), 0.9)
    graph.nodes["5"] = nir.Threshold(threshold=np.ones(()))
    with pytest.raises(UnsupportedGraphError, match="node '5' is a Threshold"):
        import_frontend(graph, writer="snntorch")


def test_cuba_lif_with_pass_through_synapse_imports_as_lif():
    """snnTorch writes Synaptic as CubaLIF(tau_syn = dt/(1-alpha), w_in = tau_syn/dt); with
    alpha = 0 the synapse passes the input through and the neuron is our LIF."""
    beta = float(np.float32(0.9))
    ref = reference(pooling="avg", beta=beta, reset="subtract", reset_timing="delayed")
    graph = snntorch_like_graph(ref, beta)
    for name in ("2", "5", "7"):
        lif = graph.nodes[name]
        tau_syn = np.asarray(SNNTORCH_DT / (1 - np.float32(0.0)))
        graph.nodes[name] = nir.CubaLIF(tau_syn=tau_syn, tau_mem=np.asarray(lif.tau), r=np.asarray(lif.r),
                                        v_leak=np.asarray(lif.v_leak), v_threshold=np.asarray(lif.v_threshold),
                                        w_in=tau_syn / SNNTORCH_DT)
    imported, _ = import_frontend(graph, writer="snntorch")
    x = frames()
    assert all(torch.equal(a, b) for a, b in zip(ref(x)[0], imported(x)[0]))
