"""The device table, its validation, and energy / on-chip time arithmetic by hand."""
from __future__ import annotations

import json

import pytest
import torch

from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.report import ReportError, SpikeRecord, build_report, load_devices
from neurodeploy.report.devices import parse_devices

TINY = dict(input_height=8, input_width=8, conv_channels=2, spiking_channels=3, d_model=16, n_layers=1,
            d_state=4, num_classes=3)
REQUIRED_TARGETS = ("loihi", "spinnaker2", "spinnaker", "cpu", "gpu", "arm", "cmos45nm")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = MambaSpike(MambaSpikeConfig(**TINY)).eval()
    frames = torch.poisson(torch.full((1, 5, 2, 8, 8), 0.5))
    with torch.no_grad():
        record = SpikeRecord.from_output(frames, model.run(frames), dt_s=1e-3)
    return model, record


def test_builtin_table_has_every_target_with_citations():
    table = load_devices()
    assert table.version.startswith("devices.json v")
    for key in REQUIRED_TARGETS:
        device = table.get(key)
        assert device.energy, key
        assert all(c.source and c.value > 0 for c in device.energy.values())
    loihi = table.get("loihi")
    assert loihi.energy_per("ac").value == 23.6 and "Davies" in loihi.energy_per("ac").source
    assert loihi.energy_per("neuron_update").value == 52 and loihi.energy_per("neuron_update_active").value == 81
    assert table.get("cmos45nm").energy_per("mac").value == 4.6
    assert table.get("cmos45nm").energy_per("neuron_update") is None  # Horowitz gives none: not invented
    assert all(not table.get(k).timing for k in REQUIRED_TARGETS)  # no citable step time (docs/energy_method.md)


def test_energy_by_hand_loihi_and_cpu(tiny):
    model, record = tiny
    report = build_report(model, record, targets=("loihi", "cpu"), host="gpu")
    loihi, cpu = report.frontend_energy
    pj = 1e-12
    expected_loihi = sum((l.effective_acs + l.effective_macs) * 23.6 * pj
                         + (l.membrane_updates - l.active_neuron_updates) * 52 * pj
                         + l.active_neuron_updates * 81 * pj for l in report.frontend)
    assert loihi.total_j == pytest.approx(expected_loihi)
    # a clocked CPU does every connection every step
    expected_cpu = sum((l.dense_ops + l.membrane_updates) * 8600 * pj for l in report.frontend)
    assert cpu.total_j == pytest.approx(expected_cpu)
    backbone = sum((b.macs_per_sample + b.elementwise_per_sample) * 300 * pj for b in report.backbone)
    assert report.backbone_energy.total_j == pytest.approx(backbone)
    assert report.total_energy_j("loihi") == pytest.approx(expected_loihi + backbone)
    assert all(t.source for t in loihi.terms)  # no energy number without its source


def test_cmos45nm_leaves_neuron_updates_uncosted(tiny):
    model, record = tiny
    report = build_report(model, record, targets="cmos45nm", host="cmos45nm")
    estimate = report.frontend_energy[0]
    assert any("neuron_update" in n for n in estimate.not_costed)
    assert all(t.energy_j is None for t in estimate.terms if t.operation == "neuron_update")
    acs = sum(l.effective_acs for l in report.frontend)
    macs = sum(l.effective_macs for l in report.frontend)
    assert estimate.total_j == pytest.approx((acs * 0.9 + macs * 4.6) * 1e-12)
    assert "not costed" in report.to_markdown()


def _write(tmp_path, data, name="my_devices.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


USER_CHIP = {"version": "lab-3", "devices": {"mychip": {
    "name": "My chip", "kind": "neuromorphic", "event_driven": True,
    "constants": {"synaptic_op_pj": {"value": 2.0, "source": "our measurement, lab notebook 12"},
                  "neuron_update_pj": {"value": 4.0, "source": "our measurement, lab notebook 12"}},
    "timing": {"synaptic_op_ns": {"value": 1.0, "source": "datasheet p. 3"},
               "neuron_update_ns": {"value": 2.0, "source": "datasheet p. 3"}}}}}


def test_user_device_file_adds_a_target_with_timing(tiny, tmp_path):
    model, record = tiny
    report = build_report(model, record, targets=("loihi", "mychip"), host="arm",
                          devices_file=_write(tmp_path, USER_CHIP))
    assert report.table_version == "devices.json v2026.1 + my_devices.json vlab-3"
    mine = report.frontend_energy[1]
    assert mine.table == "my_devices.json vlab-3"
    expected = sum((l.synaptic_ops * 2.0 + l.membrane_updates * 4.0) * 1e-12 for l in report.frontend)
    assert mine.total_j == pytest.approx(expected)
    loihi_time, mine_time = report.on_chip
    assert loihi_time.method == "unknown" and loihi_time.mean_step_s is None
    ops = [sum(step) for step in zip(*(l.synaptic_ops_per_step for l in report.frontend))]
    neurons = sum(l.neurons for l in report.frontend)
    per_step = [(o * 1.0 + neurons * 2.0) * 1e-9 for o in ops]
    assert mine_time.mean_step_s == pytest.approx(sum(per_step) / len(per_step))
    assert mine_time.peak_step_s == pytest.approx(max(per_step))
    assert mine_time.sources == ("datasheet p. 3", "datasheet p. 3")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["devices"]["mychip"]["constants"]["synaptic_op_pj"].pop("source"), "has no citation"),
    (lambda d: d.pop("version"), "'version' is missing"),
    (lambda d: d["devices"]["mychip"]["constants"].update(fj_per_op={"value": 1, "source": "x"}), "not a known constant"),
    (lambda d: d["devices"]["mychip"]["constants"]["synaptic_op_pj"].update(value=-1), "expected a positive number"),
    (lambda d: d["devices"]["mychip"].update(kind="fpga"), "expected one of"),
])
def test_bad_devices_file_names_the_file_and_field(tmp_path, mutate, message):
    data = json.loads(json.dumps(USER_CHIP))
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ReportError, match=message) as info:
        load_devices(path)
    assert "my_devices.json" in str(info.value) and "devices.json" in str(info.value)


def test_malformed_json_and_missing_file(tmp_path):
    with pytest.raises(ReportError, match=r"not valid JSON \(line 1"):
        load_devices(_write(tmp_path, "{not json"))
    with pytest.raises(ReportError, match="cannot read devices file"):
        load_devices(tmp_path / "absent.json")


def test_unknown_target_and_neuromorphic_host(tiny):
    model, record = tiny
    with pytest.raises(ReportError, match=r"unknown target 'loihi3'.*devices file"):
        build_report(model, record, targets=("loihi3",))
    with pytest.raises(ReportError, match="cannot run the Mamba backbone"):
        build_report(model, record, host="loihi")


def test_parse_devices_accepts_builtin_shape():
    version, devices = parse_devices(USER_CHIP, "inline.json")
    assert version == "lab-3" and devices["mychip"].event_driven
