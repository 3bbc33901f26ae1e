"""OnnxBackboneRuntime: streaming by step and by packet equals the whole sequence and PyTorch.

Tolerance: max |logit difference| <= 1e-4 (float32).
"""
import numpy as np
import pytest
import torch

from neurodeploy.exporters.onnx import export_backbone, export_backbone_chunk, export_backbone_step
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.runtimes.onnxruntime import OnnxBackboneRuntime

TOL = 1e-4


def small_model(interface: str, window: int = 5) -> MambaSpike:
    torch.manual_seed(3)
    config = MambaSpikeConfig(input_height=18, input_width=18, conv_channels=8, spiking_channels=8, d_model=16,
                              n_layers=2, num_classes=5, interface=interface, interface_window=window)
    return MambaSpike(config).eval()


def spikes(config: MambaSpikeConfig, batch: int, steps: int, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (batch, steps, config.spiking_channels, config.feature_height, config.feature_width)
    return (rng.random(shape) < 0.3).astype(np.float32)


@pytest.fixture(scope="module", params=[("centered", 5), ("causal", 5), ("centered", 4), ("causal", 1)],
                ids=lambda p: f"{p[0]}{p[1]}")
def backbone(request, tmp_path_factory):
    interface, window = request.param
    model = small_model(interface, window)
    folder = tmp_path_factory.mktemp(f"rt_{interface}{window}")
    export_backbone(model, folder / "backbone.onnx", dt=1e-3)
    export_backbone_chunk(model, folder / "backbone_chunk.onnx", dt=1e-3)
    export_backbone_step(model, folder / "backbone_step.onnx", dt=1e-3)
    return model, OnnxBackboneRuntime.from_directory(folder)


def diff(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def torch_anytime(model: MambaSpike, x: np.ndarray):
    state = model.backbone_initial_state(x.shape[0])
    anytime = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            logits, state = model.backbone_step(torch.from_numpy(x[:, t]), state)
            anytime.append(logits.numpy())
        final, state = model.backbone_flush(state)
    return anytime, final.numpy(), state


def test_step_graph_for_t_steps_equals_full_graph(backbone):
    model, runtime = backbone
    x = spikes(model.config, 2, 13)
    anytime, final, _ = torch_anytime(model, x)
    runtime.reset(2)
    for t in range(x.shape[1]):
        assert diff(runtime.step(x[:, t]), anytime[t]) <= TOL
    streamed = runtime.flush()
    whole = runtime.run(x)
    assert isinstance(streamed, torch.Tensor) and streamed.dtype == torch.float32  # the BackboneRuntime protocol
    assert diff(streamed, whole) <= TOL
    assert diff(whole, final) <= TOL
    assert torch.equal(runtime.flush(), streamed)  # a second flush pushes nothing


@pytest.mark.parametrize("cuts", [(1, 3, 8), (2,), (6,), (1, 2, 3, 4)])
def test_chunks_equal_the_whole(backbone, cuts):
    """Packets of several bins; the first ones may lie inside the centered warm-up."""
    model, runtime = backbone
    x = spikes(model.config, 3, 11)
    anytime, final, _ = torch_anytime(model, x)
    runtime.reset(3)
    for lo, hi in zip((0, *cuts), (*cuts, x.shape[1])):
        logits = runtime.push(x[:, lo:hi])
        assert diff(logits, anytime[hi - 1]) <= TOL
    assert diff(runtime.flush(), final) <= TOL


def test_prefill_to_step_hand_off(backbone):
    """Prefill with the chunk graph, continue with the step graph; the state matches PyTorch's."""
    model, runtime = backbone
    x = spikes(model.config, 1, 12)
    anytime, final, torch_state = torch_anytime(model, x)
    runtime.reset(1)
    runtime.push(x[:, :7])
    for t in range(7, 12):
        assert diff(runtime.step(x[:, t]), anytime[t]) <= TOL
    assert diff(runtime.flush(), final) <= TOL
    state = runtime.get_state()
    assert (state.count, state.received, state.pushed) == (torch_state.count, torch_state.received, torch_state.pushed)
    for ours, theirs in zip(state.layers, torch_state.layers):
        torch.testing.assert_close(ours.conv_state, theirs.conv_state, atol=TOL, rtol=0)
        torch.testing.assert_close(ours.ssm_state, theirs.ssm_state, atol=TOL, rtol=0)
    torch.testing.assert_close(state.feature_sum, torch_state.feature_sum, atol=TOL, rtol=0)
    torch.testing.assert_close(state.interface.ring, torch_state.interface.ring, atol=0, rtol=0)


def test_state_hand_off_from_pytorch(backbone):
    """A PyTorch prefill handed to onnxruntime (set_state) continues the same sample."""
    model, runtime = backbone
    x = spikes(model.config, 2, 9)
    anytime, final, _ = torch_anytime(model, x)
    state = model.backbone_initial_state(2)
    with torch.no_grad():
        for t in range(4):
            _, state = model.backbone_step(torch.from_numpy(x[:, t]), state)
    runtime.set_state(state)
    assert diff(runtime.push(x[:, 4:]), anytime[-1]) <= TOL
    assert diff(runtime.flush(), final) <= TOL


def test_reset_starts_a_new_sample(backbone):
    model, runtime = backbone
    first, second = spikes(model.config, 1, 6, seed=5), spikes(model.config, 1, 6, seed=6)
    runtime.reset(1)
    runtime.push(first)
    runtime.flush()
    runtime.reset(1)
    runtime.push(second)
    assert diff(runtime.flush(), runtime.run(second)) <= TOL


def test_bad_input_is_refused_with_the_way_out(backbone):
    model, runtime = backbone
    runtime.reset(2)
    with pytest.raises(ValueError, match="flush\\(\\) before any spike frame"):
        runtime.flush()
    with pytest.raises(ValueError, match="call reset\\(3\\) first"):
        runtime.step(np.zeros((3, 8, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"expects \(B, 8, 4, 4\)"):
        runtime.step(np.zeros((2, 8, 5, 4), np.float32))
    with pytest.raises(ValueError, match="0 time steps"):
        runtime.push(np.zeros((2, 0, 8, 4, 4), np.float32))
    with pytest.raises(ValueError, match="backbone has 2"):
        runtime.set_state(_one_layer_state(model))


def _one_layer_state(model: MambaSpike):
    state = model.backbone_initial_state(1)
    return state._replace(layers=state.layers[:1])


def test_runtime_needs_the_graph_it_is_asked_to_run(tmp_path):
    model = small_model("causal")
    path = export_backbone_step(model, tmp_path / "backbone_step.onnx", dt=1e-3).path
    runtime = OnnxBackboneRuntime(step=path)
    with pytest.raises(ValueError, match="needs the full graph"):
        runtime.run(spikes(model.config, 1, 3))
    with pytest.raises(ValueError, match="expected a neurodeploy backbone full graph"):
        OnnxBackboneRuntime(full=path)
    with pytest.raises(FileNotFoundError, match="export_backbone_chunk"):
        OnnxBackboneRuntime(chunk=tmp_path / "missing.onnx")


def test_tuned_step_binding_keeps_the_scalar_states_scalar(tmp_path):
    """count and pushed are 0-d in the graph; the ping-pong binding must keep them 0-d (onnxruntime
    1.30 refused the shape (1,) that np.ascontiguousarray had made of them)."""
    model = small_model("causal")
    path = export_backbone_step(model, tmp_path / "backbone_step.onnx", dt=1e-3).path
    runtime = OnnxBackboneRuntime(step=path, tuned=True)
    runtime.reset(1)
    x = spikes(model.config, 1, 4)
    for t in range(4):  # both state sets of the ping-pong pair, twice
        runtime.step(x[:, t])
        assert runtime._feeds["pushed"].shape == () and runtime._feeds["count"].shape == ()
    state = runtime.get_state()
    assert state.count == 4 and state.pushed == 4
