"""Front-end and backbone counts checked by hand on tiny networks and against NeuroBench's rules."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.report import ReportError, SpikeRecord
from neurodeploy.report.backbone import count_backbone
from neurodeploy.report.counts import conv_fanout, count_frontend, module_footprint

TINY = dict(input_height=8, input_width=8, conv_channels=2, spiking_channels=3, d_model=16, n_layers=1,
            d_state=4, num_classes=3)


def tiny_model(**overrides) -> MambaSpike:
    torch.manual_seed(0)
    return MambaSpike(MambaSpikeConfig(**{**TINY, **overrides})).eval()


def empty_record(model: MambaSpike, steps: int = 2) -> tuple[torch.Tensor, list[torch.Tensor]]:
    c = model.config
    frames = torch.zeros(1, steps, 2, c.input_height, c.input_width)
    spikes = [torch.zeros(1, steps, *shape) for shape in model.spiking_frontend.layer_shapes()]
    return frames, spikes


def test_conv_fanout_is_exact_at_the_borders():
    weight = torch.ones(5, 2, 3, 3)
    fanout = conv_fanout(weight, (6, 7), padding=1, dense=False)
    assert fanout.shape == (2, 6, 7)
    assert fanout[0, 0, 0] == 4 * 5  # corner: 2x2 output positions
    assert fanout[1, 0, 3] == 6 * 5  # edge: 2x3
    assert fanout[0, 3, 3] == 9 * 5  # interior: 3x3
    # every (input, output) pair of a pad-1 3x3 conv along one axis: 3n - 2
    assert fanout.sum() == 2 * 5 * (3 * 6 - 2) * (3 * 7 - 2)


@pytest.mark.parametrize("pooling", ["max", "avg", "sum"])
def test_known_input_spikes_give_the_kernel_geometry(pooling):
    model = tiny_model(pooling=pooling)
    c_out = model.config.conv_channels
    frames, spikes = empty_record(model, steps=3)
    frames[0, 0, 0, 0, 0] = 1  # corner event, a spike: 4 positions x C_out ACs
    frames[0, 1, 1, 4, 4] = 1  # interior: 9 x C_out ACs
    frames[0, 2, 1, 0, 4] = 3  # edge, graded count of 3 events: 6 x C_out MACs (one graded spike)
    layers = count_frontend(model, SpikeRecord(frames, tuple(spikes)))
    first = layers[0]
    assert first.effective_acs == (4 + 9) * c_out
    assert first.effective_macs == 6 * c_out
    assert first.event_synaptic_ops == (4 + 9 + 3 * 6) * c_out
    assert first.input_spikes == 3 and first.input_events == 5
    h, w = model.config.input_height, model.config.input_width
    assert first.dense_ops == 3 * 2 * c_out * (3 * h - 2) * (3 * w - 2)
    assert first.synaptic_ops_per_step == (4 * c_out, 9 * c_out, 6 * c_out)
    # pooling acts on currents: the 17x17-style map after pooling does not change the ops
    assert layers[1].effective_acs == 0 and layers[1].input_spikes == 0


def test_zero_weights_are_not_synapses():
    model = tiny_model()
    with torch.no_grad():
        model.spiking_frontend.conv1.weight[0] = 0  # output channel 0 has no synapses
    frames, spikes = empty_record(model, steps=1)
    frames[0, 0, 0, 4, 4] = 1
    first = count_frontend(model, SpikeRecord(frames, tuple(spikes)))[0]
    assert first.effective_acs == 9 * (model.config.conv_channels - 1)
    # Dense counts every connection, zero weights included
    assert first.dense_ops == 2 * model.config.conv_channels * (3 * 8 - 2) ** 2


def test_hidden_layer_spikes_and_recurrent_ops():
    model = tiny_model(recurrent=True)
    frames, spikes = empty_record(model, steps=3)
    c1, h1, w1 = model.spiking_frontend.layer_shapes()[0]
    spikes[0][0, 0, 1, 0, 0] = 1  # lif1 spikes at t=0 (corner) and t=2 (interior)
    spikes[0][0, 2, 0, 2, 2] = 1
    layers = count_frontend(model, SpikeRecord(frames, tuple(spikes)))
    first, second = layers[0], layers[1]
    # recurrent1 (1x1): the t=0 spike reaches t=1 through C_out synapses; the t=2 spike has no next step
    assert first.recurrent_acs == c1 and first.effective_acs == c1
    assert first.dense_ops == 3 * 2 * c1 * (3 * 8 - 2) ** 2 + 2 * c1 * h1 * w1 * c1
    assert first.output_spikes == 2 and first.neurons == c1 * h1 * w1
    assert first.firing_rate == pytest.approx(2 / (3 * c1 * h1 * w1))
    assert first.activation_sparsity == pytest.approx(1 - 2 / (3 * c1 * h1 * w1))
    assert first.membrane_updates == 3 * c1 * h1 * w1 and first.active_neuron_updates == 2
    c2 = model.spiking_frontend.conv2.out_channels
    assert second.input_spikes == 2
    assert second.effective_acs == (4 + 9) * c2 and second.effective_macs == 0


def test_counts_equal_neurobench_rule_on_a_real_run():
    """NeuroBench counts sum(conv(binary(x), binary(W))) per layer call, bias excluded; Dense with all ones."""
    model = tiny_model(recurrent=True, pooling="sum")
    torch.manual_seed(1)
    frames = torch.poisson(torch.full((2, 6, 2, 8, 8), 0.8))
    with torch.no_grad():
        out = model.run(frames)
        layers = count_frontend(model, SpikeRecord.from_output(frames, out))
    front = model.spiking_frontend
    inputs = [frames, out.spikes[0], out.spikes[1]]
    for k, (layer, x, spk) in enumerate(zip(layers, inputs, out.spikes)):
        conv = (front.conv1, front.conv2, front.conv3)[k]
        rec = (front.recurrent1, front.recurrent2, front.recurrent3)[k]
        effective = dense = 0.0
        for t in range(frames.shape[1]):  # one NeuroBench hook call per step
            xt = x[:, t]
            effective += F.conv2d((xt != 0).float(), (conv.weight != 0).float(), padding=1).sum().item()
            dense += F.conv2d(torch.ones_like(xt), torch.ones_like(conv.weight), padding=1).sum().item()
            if t > 0:
                prev = spk[:, t - 1]
                effective += F.conv2d((prev != 0).float(), (rec.weight != 0).float()).sum().item()
                dense += F.conv2d(torch.ones_like(prev), torch.ones_like(rec.weight)).sum().item()
        batch = frames.shape[0]
        assert layer.synaptic_ops == pytest.approx(effective / batch)
        assert layer.dense_ops == pytest.approx(dense / batch)
        sparsity = 1 - spk.count_nonzero().item() / spk.numel()  # NeuroBench ActivationSparsity, per layer
        assert layer.activation_sparsity == pytest.approx(sparsity)
    assert layers[1].effective_macs == 0  # hidden layers see binary spikes: all ACs


def test_counts_match_neurobench_package_when_installed():
    """Runs NeuroBench's own single_layer_MACs when the package is importable (it is not a project dependency)."""
    macs = pytest.importorskip("neurobench.metrics.utils.layers.macs")
    model = tiny_model()
    torch.manual_seed(2)
    frames = (torch.rand(1, 4, 2, 8, 8) < 0.3).float()  # binary input: NeuroBench and we both say ACs
    with torch.no_grad():
        out = model.run(frames)
    layers = count_frontend(model, SpikeRecord.from_output(frames, out))
    front = model.spiking_frontend
    for layer, x, conv in zip(layers, [frames, *out.spikes[:2]], (front.conv1, front.conv2, front.conv3)):
        acs = dense = 0
        for t in range(x.shape[1]):
            ops, spiking = macs.single_layer_MACs(x[:, t], conv)
            total, _ = macs.single_layer_MACs(x[:, t], conv, total=True)
            assert spiking
            acs, dense = acs + ops, dense + total
        assert layer.effective_acs == acs and layer.dense_ops == dense
    # graded event counts: NeuroBench makes a whole call MACs when any input is not 0/+-1; the total agrees
    graded = torch.poisson(torch.full((1, 4, 2, 8, 8), 0.8))
    with torch.no_grad():
        out = model.run(graded)
    first = count_frontend(model, SpikeRecord.from_output(graded, out))[0]
    total = sum(macs.single_layer_MACs(graded[:, t], front.conv1)[0] for t in range(4))
    assert first.effective_macs > 0 and first.synaptic_ops == total


def test_footprint_is_neurobench_footprint():
    model = tiny_model(recurrent=True)
    frames, spikes = empty_record(model)
    record = SpikeRecord(frames, tuple(spikes))
    front, back = count_frontend(model, record), count_backbone(model, record)
    expected = sum(p.numel() * p.element_size() for p in model.parameters()) + \
        sum(b.numel() * b.element_size() for b in model.buffers())
    assert sum(l.footprint_bytes for l in (*front, *back)) == expected == module_footprint(model)[1]
    assert sum(l.parameters for l in (*front, *back)) == sum(p.numel() for p in model.parameters())


def test_backbone_macs_per_step_by_hand():
    model = tiny_model()
    c = model.config
    frames, spikes = empty_record(model, steps=5)
    spikes[2][0, 0, 0, 0, 0] = 1  # one output spike: the causal/centered average spreads it over 5 steps
    rows = {r.name: r for r in count_backbone(model, SpikeRecord(frames, tuple(spikes)))}
    d, n = c.d_inner, c.d_state
    block = rows["mamba_blocks.0"]
    assert block.breakdown_per_step == {
        "in_proj": 16 * 2 * d, "conv1d": d * 4, "x_proj": d * (c.dt_rank + 2 * n), "dt_proj": c.dt_rank * d,
        "scan": 4 * d * n + 3 * d, "out_proj": d * 16, "residual": 16}
    assert block.macs_per_sample == 5 * block.macs_per_step
    proj = rows["input_proj"]
    assert proj.macs_per_step == c.spike_features * c.d_model
    nonzero_steps = 3 if c.interface == "centered" else 5  # centered: steps 0..2 see the spike at t=0
    assert proj.effective_macs == nonzero_steps * c.d_model
    head = rows["head (mean, norm, classifier)"]
    assert head.macs_per_sample == 5 * c.d_model + c.d_model * c.num_classes


def test_bad_records_get_one_clear_error():
    model = tiny_model()
    frames, spikes = empty_record(model)
    with pytest.raises(ReportError, match="lif2 have shape"):
        count_frontend(model, SpikeRecord(frames, (spikes[0], spikes[0], spikes[2])))
    spikes[0][0, 0, 0, 0, 0] = 0.5
    with pytest.raises(ReportError, match="not membranes"):
        count_frontend(model, SpikeRecord(frames, tuple(spikes)))
    with pytest.raises(ReportError, match="3 LIF layers"):
        count_frontend(model, SpikeRecord(frames, tuple(spikes[:2])))
