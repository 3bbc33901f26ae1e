"""backbone.onnx / backbone_chunk.onnx / backbone_step.onnx: structure, metadata, parity with PyTorch.

Tolerance everywhere: max |logit difference| <= 1e-4 in float32 (issue 6); the measured figures
are about 1e-6 for these small models.
"""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from neurodeploy.exporters.onnx import (
    DEFAULT_OPSET,
    OnnxExportError,
    OnnxParityError,
    export_backbone,
    export_backbone_chunk,
    export_backbone_step,
)
from neurodeploy.formats.onnx_backbone import STATE_NAMES, STATE_OUTPUT_NAMES, read_metadata, state_to_feeds
from neurodeploy.exporters.onnx_functions import DOMAIN, DOMAIN_VERSION
from neurodeploy.model import MambaSpike, MambaSpikeConfig

TOL = 1e-4
INTERFACES = ("centered", "causal")


def small_model(interface: str, seed: int = 0, **fields) -> MambaSpike:
    torch.manual_seed(seed)
    base = dict(input_height=18, input_width=18, conv_channels=8, spiking_channels=8, d_model=16, n_layers=2,
                num_classes=5, interface=interface)
    base.update(fields)
    return MambaSpike(MambaSpikeConfig(**base)).eval()


def spikes(config: MambaSpikeConfig, batch: int, steps: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (batch, steps, config.spiking_channels, config.feature_height, config.feature_width)
    return (rng.random(shape) < 0.3).astype(np.float32)


@pytest.fixture(scope="module", params=INTERFACES)
def exported(request, tmp_path_factory):
    model = small_model(request.param)
    folder = tmp_path_factory.mktemp(f"onnx_{request.param}")
    results = {
        "full": export_backbone(model, folder / "backbone.onnx", dt=1e-3),
        "chunk": export_backbone_chunk(model, folder / "backbone_chunk.onnx", dt=1e-3),
        "step": export_backbone_step(model, folder / "backbone_step.onnx", dt=1e-3),
    }
    return model, results


def plain_session(path) -> ort.InferenceSession:
    # no custom-op library registered: the functions' standard-ONNX bodies must do
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch,steps", [(1, 1), (2, 3), (4, 17), (1, 40)])
def test_full_graph_matches_torch_on_other_batch_and_length(exported, batch, steps):
    model, results = exported
    assert results["full"].parity_sample == (3, 11)  # the export's own check used another shape
    x = spikes(model.config, batch, steps)
    (logits,) = plain_session(results["full"].path).run(["logits"], {"spikes": x})
    with torch.no_grad():
        expected = model.backbone_forward(torch.from_numpy(x)).numpy()
    assert logits.shape == (batch, model.config.num_classes)
    assert np.abs(logits - expected).max() <= TOL


def test_export_result_records_parity(exported):
    _, results = exported
    for graph, result in results.items():
        assert result.graph == graph
        assert 0.0 <= result.parity_max_abs <= TOL
        assert result.opset == DEFAULT_OPSET >= 20
        assert result.custom_nodes == 2
        assert result.size_bytes == result.path.stat().st_size
        json.dumps(result.to_dict())  # goes into the bundle manifest as is


@pytest.mark.parametrize("graph,op,with_scan", [("full", "SelectiveScan", True), ("chunk", "SelectiveScan", True),
                                                ("step", "SelectiveStateUpdate", False)])
def test_one_custom_function_node_per_layer(exported, graph, op, with_scan):
    model, results = exported
    proto = onnx.load(str(results[graph].path))
    custom = [n for n in proto.graph.node if n.domain == DOMAIN]
    assert [n.op_type for n in custom] == [op] * model.config.n_layers
    opsets = {o.domain: o.version for o in proto.opset_import}
    assert opsets[DOMAIN] == DOMAIN_VERSION and opsets[""] >= 20
    (function,) = proto.functions
    assert (function.domain, function.name) == (DOMAIN, op)
    # the function's standard-ONNX opset is the model's, and its body is standard ONNX only
    assert {o.domain: o.version for o in function.opset_import} == {"": opsets[""]}
    assert all(n.domain == "" for n in function.node)
    assert any(n.op_type == "Scan" for n in function.node) == with_scan
    inputs = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0"] if with_scan else \
        ["ssm_state", "u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    assert list(function.input) == inputs
    onnx.checker.check_model(proto, full_check=True)


def test_state_names_in_and_out_are_distinct(exported):
    _, results = exported
    for graph, spikes_name in (("chunk", "spikes"), ("step", "spikes_t")):
        proto = onnx.load(str(results[graph].path))
        assert [i.name for i in proto.graph.input] == [spikes_name, *STATE_NAMES]
        assert [o.name for o in proto.graph.output] == ["logits", *STATE_OUTPUT_NAMES]
        assert STATE_OUTPUT_NAMES == tuple(f"{n}_out" for n in STATE_NAMES)


def test_dynamic_batch_and_time_dims(exported):
    _, results = exported
    proto = onnx.load(str(results["full"].path))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:2]] == ["batch", "time"]


def test_metadata(exported):
    model, results = exported
    for graph, result in results.items():
        meta = read_metadata(result.path)
        assert meta["neurodeploy.graph"] == graph
        assert MambaSpikeConfig.from_dict(json.loads(meta["neurodeploy.model_config"])) == model.config
        assert float(meta["neurodeploy.dt"]) == 1e-3
        assert meta[f"{DOMAIN}.version"] == str(DOMAIN_VERSION)
        assert meta["neurodeploy.opset"] == str(DEFAULT_OPSET)
        assert meta["neurodeploy.lookahead"] == str(model.config.lookahead)
        versions = json.loads(meta["neurodeploy.versions"])
        assert versions["onnx"] == onnx.__version__ and versions["onnxruntime"] == ort.__version__


def test_step_graph_reproduces_backbone_step_and_its_warmup(exported):
    """Feeding the step graph by hand (no runtime): every anytime logit and the state after
    each push equal MambaSpike.backbone_step, warm-up steps of the centered interface included."""
    model, results = exported
    session = plain_session(results["step"].path)
    x = spikes(model.config, 2, 7)
    state = model.backbone_initial_state(2)

    feeds = state_to_feeds(state)
    with torch.no_grad():
        for t in range(x.shape[1]):
            outputs = session.run(None, {"spikes_t": x[:, t], **feeds})
            feeds = dict(zip(STATE_NAMES, outputs[1:]))
            logits, state = model.backbone_step(torch.from_numpy(x[:, t]), state)
            assert np.abs(outputs[0] - logits.numpy()).max() <= TOL
            assert int(feeds["count"]) == state.count and int(feeds["pushed"]) == state.pushed
            for name, value in state_to_feeds(state).items():
                assert np.abs(feeds[name] - value).max() <= TOL, name


def test_export_refuses_bad_arguments(tmp_path):
    model = small_model("causal")
    with pytest.raises(OnnxExportError, match="opset 19"):
        export_backbone(model, tmp_path / "a.onnx", dt=1e-3, opset=19)
    with pytest.raises(OnnxExportError, match="dt"):
        export_backbone(model, tmp_path / "a.onnx", dt=0.0)
    with pytest.raises(OnnxExportError, match="validation sample"):
        export_backbone(model, tmp_path / "a.onnx", dt=1e-3, sample=torch.zeros(1, 4, 3, 4, 4))
    with pytest.raises(OnnxExportError, match="MambaSpike"):
        export_backbone(torch.nn.Linear(2, 2), tmp_path / "a.onnx", dt=1e-3)
    with torch.no_grad():
        model.mamba_blocks[0].mamba.D[0] = float("nan")
    with pytest.raises(OnnxExportError, match="mamba_blocks.0.mamba.D"):
        export_backbone(model, tmp_path / "a.onnx", dt=1e-3)


def test_parity_check_can_fail(tmp_path):
    # a negative tolerance no difference can meet: proves the check is live, not decorative
    with pytest.raises(OnnxParityError, match="differs from PyTorch"):
        export_backbone(small_model("causal"), tmp_path / "a.onnx", dt=1e-3, tolerance=-1.0)


@pytest.mark.slow
def test_nmnist_size_full_and_step_parity(tmp_path):
    """The N-MNIST reference size (4096 features, d_model 128, 4 layers), 60 steps."""
    torch.manual_seed(0)
    model = MambaSpike(MambaSpikeConfig.nmnist_v1()).eval()
    x = torch.from_numpy(spikes(model.config, 2, 60))
    full = export_backbone(model, tmp_path / "backbone.onnx", dt=1e-3, sample=x)
    step = export_backbone_step(model, tmp_path / "backbone_step.onnx", dt=1e-3, sample=x[:1, :30])
    assert full.parity_max_abs <= TOL and step.parity_max_abs <= TOL
    assert full.custom_nodes == step.custom_nodes == 4
