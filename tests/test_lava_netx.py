"""NIR -> Lava layers -> netx: pooling folded exactly, unsupported semantics refused, quantisation accounted."""
import dataclasses

import h5py
import numpy as np
import pytest
import torch

from neurodeploy.exporters.netx import export_netx, quantize_layer
from neurodeploy.runtimes.lava_layers import LavaMappingError, lava_layers
from neurodeploy.exporters.nir import export_frontend
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.model.mamba_spike.frontend import SpikingFrontend, pool_current


def _frontend(**overrides) -> SpikingFrontend:
    torch.manual_seed(0)
    return SpikingFrontend(MambaSpikeConfig.deployable(**overrides)).double().eval()


@pytest.mark.parametrize("pooling", ["sum", "avg"])
def test_folded_conv_equals_conv_then_pool_at_34_and_17(pooling):
    frontend = _frontend(pooling=pooling)
    layers = lava_layers(export_frontend(frontend, 1e-3))
    assert [layer.output_shape for layer in layers] == [(32, 17, 17), (32, 8, 8), (64, 8, 8)]
    x = torch.poisson(torch.full((3, 2, 34, 34), 0.5, dtype=torch.float64))
    for conv, layer in zip((frontend.conv1, frontend.conv2), layers):
        reference = pool_current(conv(x), pooling)
        folded = torch.nn.functional.conv2d(x, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias),
                                            stride=layer.stride, padding=layer.padding)
        assert folded.shape == reference.shape  # floor edge: 34 -> 17, 17 -> 8 (last row/col dropped)
        torch.testing.assert_close(folded, reference, rtol=0, atol=1e-12)
        x = (torch.rand_like(reference) > 0.7).double()


@pytest.mark.parametrize("overrides", [dict(reset="subtract"), dict(reset_timing="delayed"),
                                       dict(reset="subtract", reset_timing="delayed")])
def test_non_lava_reset_is_refused_with_the_way_out(overrides):
    graph = export_frontend(_frontend(**overrides), 1e-3)
    with pytest.raises(LavaMappingError, match="deployable"):
        lava_layers(graph)


def test_recurrence_has_no_netx_form(tmp_path):
    graph = export_frontend(_frontend(recurrent=True), 1e-3)
    assert lava_layers(graph)[0].recurrent_weight is not None
    with pytest.raises(LavaMappingError, match="dense_rec"):
        export_netx(graph, tmp_path / "frontend.net")


def test_netx_file_layout_and_default_quantisation(tmp_path):
    export = export_netx(export_frontend(_frontend(), 1e-3), tmp_path / "frontend.net")
    print(export.summary())
    for q in export.layers:
        assert q.weights_saturated == 0 and q.bias_saturated == 0
        assert np.abs(q.weight).max() == 254 and np.all(q.weight % 2 == 0)  # 8-bit mixed-sign mantissa
        assert q.v_decay == 410 and q.i_decay == 4096
    with h5py.File(tmp_path / "frontend.net") as f:
        assert f["layer/0/type"][()] == b"input" and list(f["layer/0/shape"][()]) == [2, 34, 34]
        assert list(f["layer/1/weight"].shape) == [32, 2, 4, 4] and list(f["layer/1/stride"][()]) == [2, 2]
        assert list(f["layer/3/shape"][()]) == [64, 8, 8]
        assert f["layer/2/neuron/type"][()] == b"CUBA"
        assert f.attrs["input_message_bits"] == 8


def test_saturation_is_counted_and_an_unrepresentable_threshold_refused():
    layer = lava_layers(export_frontend(_frontend(), 1e-3))[0]
    big_bias = dataclasses.replace(layer, bias=layer.bias + 100.0)
    q = quantize_layer(big_bias)
    assert q.bias_saturated == layer.bias.size  # 100 * scale > 4095: every bias mantissa clipped, and counted
    q = quantize_layer(layer, weight_scale=4 * 254 / np.abs(layer.weight).max())
    assert q.weight_exponent == 2 and q.weights_saturated == 0
    with pytest.raises(LavaMappingError, match="17-bit"):
        quantize_layer(layer, weight_scale=2.0e5)
