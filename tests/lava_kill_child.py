"""A Lava run that steps until it is killed: the child of test_hostile_inputs' kill test."""

import torch

from neurodeploy.exporters.nir import export_frontend
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.model.mamba_spike.frontend import SpikingFrontend
from neurodeploy.runtimes.lava import LavaFrontendRuntime

torch.manual_seed(0)
model = SpikingFrontend(MambaSpikeConfig.deployable()).double().eval()
lava = LavaFrontendRuntime.floating(export_frontend(model, 1e-3), steps_per_sample=1_000_000)
frame = torch.ones((1, 2, 34, 34), dtype=torch.float64)
print("running", flush=True)
while True:
    lava.step(frame)
