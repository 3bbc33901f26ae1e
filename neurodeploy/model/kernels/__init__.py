"""Compiled kernels of the offline (whole-sequence) path: the LIF recurrence over time and the
selective scan, on CPU (numba) and on CUDA GPUs (Triton). `neurodeploy.model.mamba_spike.offline`
picks them by the tensors' device; nothing else imports them.
"""

RESET_MODES = {"subtract": 0, "zero": 1, "none": 2}  # the kernels' integer code of LIFParameters.reset
