from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def train_plainly():
    """A bare training loop for tests that check a task learns: ``run(model, task, loader, optimizer, epochs=1)``."""

    def run(model, task, loader, optimizer, epochs: int = 1) -> None:
        model.train()
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            for batch in loader:
                loss = task.training_step(model, batch).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    return run


@pytest.fixture
def shared_data() -> Path:
    """The project's offline real data folder; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def pytest_configure(config: pytest.Config) -> None:
    # hypothesis caches what it learns (.hypothesis/) in the working directory; tests never write into the tree.
    from hypothesis.configuration import set_hypothesis_home_dir

    config._formers_hypothesis_home = tempfile.TemporaryDirectory(prefix="formers-hypothesis-")
    set_hypothesis_home_dir(config._formers_hypothesis_home.name)


def pytest_unconfigure(config: pytest.Config) -> None:
    home = getattr(config, "_formers_hypothesis_home", None)
    if home is not None:
        home.cleanup()
