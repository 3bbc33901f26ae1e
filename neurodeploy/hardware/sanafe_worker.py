"""Child process that runs one SANA-FE simulation: `python -m neurodeploy.hardware.sanafe_worker SPEC OUT`.

SANA-FE is GPL-3.0 and an optional extra (`pip install neurodeploy[sanafe]`): it is imported
here only, in a process of its own, never by the toolkit. SPEC is the `.npz` written by
`neurodeploy.hardware.sanafe_network`; OUT receives JSON: per layer the neuron offsets that
fired at each simulated step, the chip's energy (J) and latency (s) per step, the synapse
count, the cores used and the peak RSS.
"""
from __future__ import annotations

import json
import resource
import sys

import numpy as np


def _run(spec: dict[str, np.ndarray]) -> dict:
    import sanafe

    arch = sanafe.load_loihi()
    cores = [core for tile in arch.tiles for core in tile.cores]
    net = sanafe.Network()
    input_spikes = spec["input_spikes"]
    steps, n_inputs = input_spikes.shape
    n_layers = int(spec["layers"])
    slot = {"core": 0, "used": 0}

    def place(neuron, *, input_soma: bool) -> None:
        if slot["used"] == 1024:
            slot["core"], slot["used"] = slot["core"] + 1, 0
        if input_soma:
            neuron.set_attributes(soma_hw_name=f"loihi_inputs[{slot['used']}]")
        neuron.map_to_core(cores[slot["core"]])
        slot["used"] += 1

    inputs = net.create_neuron_group("input", n_inputs, {})
    for i in range(n_inputs):
        inputs[i].set_attributes(model_attributes={"spikes": input_spikes[:, i].astype(int).tolist() + [0] * n_layers})
        place(inputs[i], input_soma=True)
    previous, groups, synapses = inputs, [], 0
    for k in range(n_layers):
        n, threshold, decay, _ = spec[f"l{k}_meta"]
        group = net.create_neuron_group(f"layer{k}", int(n), {"threshold": float(threshold), "leak_decay": float(decay),
                                                                "reset_mode": "hard", "reset": 0.0},
                                        log_spikes=True)
        bias = spec[f"l{k}_bias"]
        for i in range(int(n)):
            if bias[i]:
                group[i].set_attributes(model_attributes={"bias": float(bias[i]), "force_update": True})
            place(group[i], input_soma=False)
        pairs = list(zip(spec[f"l{k}_src"].tolist(), spec[f"l{k}_dst"].tolist()))
        previous.connect_neurons_sparse(group, {"weight": spec[f"l{k}_weight"].tolist()}, pairs)
        synapses += len(pairs)
        groups.append(group)
        previous = group
    chip = sanafe.SpikingChip(arch)
    chip.load(net)
    result = chip.sim(steps + n_layers, spike_trace=True, perf_trace=True)
    names = {f"layer{k}": k for k in range(n_layers)}
    fired: list[list[list[int]]] = [[[] for _ in range(steps + n_layers)] for _ in range(n_layers)]
    for t, row in enumerate(result["spike_trace"]):
        for neuron in row:
            group, offset = str(neuron).split(".")
            if group in names:
                fired[names[group]][t].append(int(offset))
    perf = result["perf_trace"]
    return {"spikes": fired, "energy_j": list(map(float, perf["total_energy"])),
            "latency_s": list(map(float, perf["sim_time"])), "synapses": synapses, "cores_used": slot["core"] + 1,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main(argv: list[str]) -> int:
    spec_path, out_path = argv
    with np.load(spec_path) as data:
        spec = {key: data[key] for key in data.files}
    try:
        payload = _run(spec)
    except ImportError:
        payload = {"error": "SANA-FE is not installed: `pip install neurodeploy[sanafe]` (or `pip install sanafe==2.2.9`)"}
    with open(out_path, "w") as f:
        json.dump(payload, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
