"""The runtime contract (runtimes/contract.py): every runtime is a FrontendRuntime / BackboneRuntime
with the same defaults, and the one stepping loop gives the reference's numbers."""
from __future__ import annotations

import pytest
import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.exporters.nir import export_frontend
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.runtimes.contract import (
    BackboneRuntime,
    FrontendRuntime,
    RuntimeOperationError,
    step_backbone,
    step_layers,
    step_pipeline,
)
from neurodeploy.runtimes.nir import NIRFrontendRuntime, NorseFrontendRuntime
from neurodeploy.runtimes.torch import TorchBackboneRuntime, TorchFrontendRuntime

SMALL = dict(input_height=16, input_width=16, conv_channels=8, spiking_channels=8, d_model=16, n_layers=1)


def _model() -> MambaSpike:
    torch.manual_seed(0)
    return MambaSpike(MambaSpikeConfig(**SMALL, reset="zero", reset_timing="immediate", pooling="sum")).eval()


def _frames(batch: int = 2, steps: int = 12) -> torch.Tensor:
    return torch.poisson(torch.full((batch, steps, 2, 16, 16), 0.3), generator=torch.Generator().manual_seed(3))


def test_every_runtime_is_a_contract_subclass_with_the_defaults():
    m = _model()
    graph = export_frontend(m, 1e-3)
    frontends = [TorchFrontendRuntime(m), NIRFrontendRuntime(graph), NorseFrontendRuntime(graph)]
    for runtime in frontends:
        assert isinstance(runtime, FrontendRuntime)
        assert runtime.latency_steps == 0
        with runtime as same:  # the context manager closes (a no-op here) and returns the runtime
            assert same is runtime
        runtime.reset(3)
        flushed = runtime.flush()  # nothing pipelined: zero steps, with the right shape
        assert flushed.shape == (3, 0, *runtime.output_shape)
        runtime.close()
        runtime.close()  # idempotent
    assert isinstance(TorchBackboneRuntime(m), BackboneRuntime)


def test_step_layers_is_the_reference_loop_and_times_every_step():
    m = _model()
    x = _frames()
    seconds: list[float] = []
    stepped = step_layers(NIRFrontendRuntime(export_frontend(m, 1e-3)), x, step_seconds=seconds)
    offline, _ = m.spiking_frontend(x)
    assert list(stepped) == list(TorchFrontendRuntime(m).layer_names)
    for got, want in zip(stepped.values(), offline):
        assert torch.equal(got, want)
    assert len(seconds) == x.shape[1] and all(s > 0 for s in seconds)
    assert sum(int(v.sum()) for v in stepped.values()) > 0  # the comparison is not of silent layers


def test_step_backbone_and_pipeline_match_the_model():
    m = _model()
    x = _frames()
    seconds: list[float] = []
    layers, anytime, final = step_pipeline(TorchFrontendRuntime(m), TorchBackboneRuntime(m), x, step_seconds=seconds)
    assert len(seconds) == x.shape[1]
    with torch.no_grad():
        offline = m.backbone_forward(layers["lif3"])
    assert torch.allclose(final, offline, atol=1e-5)
    again, final_again = step_backbone(TorchBackboneRuntime(m), layers["lif3"])
    assert torch.equal(again, anytime) and torch.equal(final_again, final)
    assert anytime.shape == (x.shape[0], x.shape[1], m.config.num_classes)


def test_state_handover_is_refused_with_a_neurodeploy_error_or_resumes_exactly():
    m = _model()
    x = _frames(batch=1)
    norse = NorseFrontendRuntime(export_frontend(m, 1e-3))
    with pytest.raises(RuntimeOperationError, match="cannot hand over its state") as info:
        norse.get_state()
    assert isinstance(info.value, NeurodeployError)
    # the NIR runtime pauses and resumes: a stream cut in two equals the stream run at once
    nir = NIRFrontendRuntime(export_frontend(m, 1e-3))
    whole = step_layers(nir, x)["lif3"]
    nir.reset(1)
    for t in range(6):
        nir.step(x[:, t])
    saved = nir.get_state()
    nir.reset(1)
    nir.set_state(saved)
    rest = [nir.step(x[:, t]) for t in range(6, x.shape[1])]
    assert torch.equal(torch.stack(rest, dim=1), whole[:, 6:])
