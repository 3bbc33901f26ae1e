"""Energy estimates: measured counts x the device table's per-operation constants.

The front-end is costed on a neuromorphic target, the backbone on the host. An event-driven
device (table field `event_driven`) does the effective ops only; any other device does the
dense count. Every term carries the constant and its citation; a term whose constant the
table does not publish is left uncosted and named in `not_costed` (the total is then a lower
bound), never filled with a guess.
"""
from __future__ import annotations

from dataclasses import dataclass

from neurodeploy.report.backbone import BackboneLayerCounts
from neurodeploy.report.counts import FrontendLayerCounts
from neurodeploy.report.devices import Device

PJ = 1e-12


@dataclass(frozen=True)
class EnergyTerm:
    layer: str
    operation: str  # "ac", "mac", "neuron_update", "neuron_update_active"
    count: float  # per sample
    constant_pj: float | None
    source: str | None
    energy_j: float | None  # None: no published constant, not costed


@dataclass(frozen=True)
class EnergyEstimate:
    """Estimated energy per sample of one half of the model on one device."""

    role: str  # "frontend" or "backbone"
    device: str
    device_name: str
    table: str
    event_driven: bool
    terms: tuple[EnergyTerm, ...]

    @property
    def total_j(self) -> float:
        return sum(t.energy_j for t in self.terms if t.energy_j is not None)

    @property
    def not_costed(self) -> tuple[str, ...]:
        return tuple(sorted({f"{t.operation} (no published constant for {self.device})"
                             for t in self.terms if t.energy_j is None and t.count > 0}))

    def per_layer_j(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in self.terms:
            out[t.layer] = out.get(t.layer, 0.0) + (t.energy_j or 0.0)
        return out

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(sorted({t.source for t in self.terms if t.source}))


def _term(device: Device, layer: str, operation: str, count: float) -> EnergyTerm:
    constant = device.energy_per(operation)
    if constant is None:
        return EnergyTerm(layer, operation, count, None, None, None)
    return EnergyTerm(layer, operation, count, constant.value, constant.source, count * constant.value * PJ)


def _neuron_terms(device: Device, layer: str, updates: float, active: float) -> list[EnergyTerm]:
    # Loihi publishes different energies for active and inactive neuron updates; we read
    # "active" as a neuron-step that fired (it also sends a spike) and price the rest as inactive.
    if "neuron_update_active_pj" in device.energy:
        return [_term(device, layer, "neuron_update", updates - active),
                _term(device, layer, "neuron_update_active", active)]
    return [_term(device, layer, "neuron_update", updates)]


def frontend_energy(device: Device, layers: tuple[FrontendLayerCounts, ...]) -> EnergyEstimate:
    terms = []
    for layer in layers:
        if device.event_driven:
            terms.append(_term(device, layer.name, "ac", layer.effective_acs))
            terms.append(_term(device, layer.name, "mac", layer.effective_macs))
        else:
            # a clocked device multiplies every input by every weight, every step
            terms.append(_term(device, layer.name, "mac", layer.dense_ops))
        terms.extend(_neuron_terms(device, layer.name, layer.membrane_updates, layer.active_neuron_updates))
    return EnergyEstimate("frontend", device.key, device.name, device.table, device.event_driven, tuple(terms))


def backbone_energy(device: Device, layers: tuple[BackboneLayerCounts, ...]) -> EnergyEstimate:
    terms = []
    for layer in layers:
        macs = layer.effective_macs if device.event_driven else layer.macs_per_sample
        terms.append(_term(device, layer.name, "mac", macs))
        if layer.elementwise_per_sample:
            terms.append(_term(device, layer.name, "neuron_update", layer.elementwise_per_sample))
    return EnergyEstimate("backbone", device.key, device.name, device.table, device.event_driven, tuple(terms))
