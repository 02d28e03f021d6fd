"""Test-wide settings.

One thread: on 2-core machines a second torch thread fighting a busy core made small matmuls
several times slower, and timings in tests would be noise anyway (speed lives in benchmarks/).
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
