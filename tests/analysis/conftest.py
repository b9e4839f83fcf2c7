"""Analysis tests train and score small models: one torch thread is faster on a shared 2-core machine
(OpenMP threads spin waiting for each other when another process holds a core) and keeps runs repeatable.
Module-scoped, so that tests elsewhere get their threads back."""
import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
