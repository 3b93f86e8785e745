import pytest

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

ROBOTS = ["quadruped", "biped"]


@pytest.fixture(params=ROBOTS)
def robot(request) -> str:
    return request.param
