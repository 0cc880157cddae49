from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from formers.data.assets import ASSETS, unpack_asset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# ---------------------------------------------------------------- tests never write into the working tree

WORKING_TREE_IGNORED = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".import_linter_cache"}
"""Folders of the repository that tools (not tests) write: caches, the virtual environment."""


def _ignored(name: str) -> bool:
    return name in WORKING_TREE_IGNORED or name.endswith(".egg-info")


def working_tree() -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    """(size, mtime) of every file and the mtime of every folder of the repository (not the ignored folders)."""
    files: dict[str, tuple[int, int]] = {}
    folders: dict[str, int] = {}
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if not _ignored(d)]
        try:
            folders[root] = os.stat(root).st_mtime_ns
        except FileNotFoundError:
            continue
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            files[path] = (st.st_size, st.st_mtime_ns)
    return files, folders


def tree_changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """``added PATH`` / ``removed PATH`` / ``changed PATH`` lines, paths relative to the repository."""
    rel = lambda p: os.path.relpath(p, REPO)  # noqa: E731
    return sorted(
        [f"added {rel(p)}" for p in after.keys() - before.keys()]
        + [f"removed {rel(p)}" for p in before.keys() - after.keys()]
        + [f"changed {rel(p)}" for p in before.keys() & after.keys() if before[p] != after[p]]
    )


_TREE: dict[str, dict] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _TREE["files"], _TREE["folders"] = working_tree()


@pytest.fixture(autouse=True)
def _working_tree_untouched(request: pytest.FixtureRequest):
    """Fails the test that adds, removes or rewrites a file of the repository (runs/, tokenizer.json, ...).

    After each test only the folders' modification times are read (cheap); a changed folder triggers a full listing.
    """
    yield
    if "folders" not in _TREE:
        return
    moved = False
    for folder, mtime in _TREE["folders"].items():
        try:
            moved = os.stat(folder).st_mtime_ns != mtime
        except FileNotFoundError:
            moved = True
        if moved:
            break
    if not moved:
        return
    files, folders = working_tree()
    changes = tree_changes(_TREE["files"], files)
    _TREE["files"], _TREE["folders"] = files, folders  # report each change once
    if changes:
        where = f"{request.node.nodeid} wrote into the working tree {REPO} (use tmp_path): "
        pytest.fail(where + "; ".join(changes[:10]))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Also catches files rewritten in place (a folder's time does not change then)."""
    if "files" not in _TREE:
        return
    changes = tree_changes(_TREE["files"], working_tree()[0])
    if changes:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"the tests wrote into the working tree {REPO}: " + "; ".join(changes[:20])
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---------------------------------------------------------------- shared fixtures


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


# ---------------------------------------------------------------- real data


@pytest.fixture
def count_ops():
    """A context manager class counting, by name, the aten ops run inside it (``.seen``, a ``Counter``): what a captured
    decoding step's length is made of, counted without timing anything."""
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen[func.__name__.split(".")[0]] += 1
            return func(*args, **(kwargs or {}))

    return Ops


@pytest.fixture(scope="session")
def shipped_data(tmp_path_factory) -> Path:
    """The data formers ships (``formers.data.assets``: GPT-2's BPE files, tinyshakespeare), unpacked once into a
    temporary folder laid out like ``shared/data`` (``gpt2-bpe/encoder.json``, ``tinyshakespeare/input.txt``)."""
    root = tmp_path_factory.mktemp("shipped-data")
    for asset in ASSETS:
        assert unpack_asset(asset, root) is not None, f"the package lacks its shipped file {asset}.gz"
    return root


@pytest.fixture(scope="session")
def gpt2_bpe_dir(shipped_data: Path) -> Path:
    """A folder holding GPT-2's ``encoder.json`` and ``vocab.bpe`` (shipped with formers)."""
    return shipped_data / "gpt2-bpe"


@pytest.fixture(scope="session")
def tinyshakespeare_txt(shipped_data: Path) -> Path:
    """tinyshakespeare's ``input.txt`` (1,115,394 characters, shipped with formers)."""
    return shipped_data / "tinyshakespeare" / "input.txt"


@pytest.fixture
def shared_data() -> Path:
    """The project's offline real-data folder (``shared/data`` beside the repository, one sub-folder per dataset, as
    its README lists); tests using it skip when it is absent. Prefer a fixture that says how to get the one dataset
    a test needs (``gpt2_bpe_dir``, ``tinyshakespeare_txt``: shipped with formers)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"the project's real-data folder {SHARED_DATA} is absent: put a checkout of the project's shared/data "
            "there (each dataset's loader in src/formers/data names its download address)"
        )
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
