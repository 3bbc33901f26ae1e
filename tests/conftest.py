import os
import sys

import pytest
import torch

# Lets tests and benchmarks import the plain reference implementation (tests/plain_reference.py).
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _single_thread_torch():
    # CI has 2 cores; one intra-op thread keeps parallel work predictable and fast for tiny models.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
