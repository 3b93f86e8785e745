import pytest
import torch

# One thread everywhere: CI has 2 cores and torch's default pool oversubscribes them.
torch.set_num_threads(1)

ROBOTS = ["quadruped", "biped"]


@pytest.fixture(params=ROBOTS)
def robot(request) -> str:
    return request.param
