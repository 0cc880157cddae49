"""The benchmark scripts are files, not modules of the package: ``load_benchmark`` imports one by name."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def load_benchmark(monkeypatch) -> Callable[[str], ModuleType]:
    """``load_benchmark("generate_speed")`` imports ``benchmarks/generate_speed.py`` (registered in ``sys.modules`` for
    the test, as dataclasses need, with ``benchmarks/`` on the path for the scripts' imports of each other)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load
