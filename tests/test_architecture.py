"""The layout's rules, checked: imports point down (import-linter contracts in pyproject.toml), no module over
600 lines, and no formers module loaded by a string."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "formers"
PYPROJECT = SRC.parents[1] / "pyproject.toml"


def test_import_contracts_are_kept():
    cli = pytest.importorskip("importlinter.cli", reason="pip install import-linter (in the dev extra)")
    # 0 when every contract is kept; otherwise it prints the imports that break one. No cache: tests write nothing
    # into the working tree.
    status = cli.lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True)
    assert status == 0, "an import points the wrong way: run `lint-imports` for the chain"


def test_no_module_is_longer_than_600_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"split these modules (house style: at most 600 lines): {long}"


def test_no_formers_module_is_loaded_by_a_string():
    pattern = re.compile(r"import_module\(|__import__\(|find_spec\(\s*[\"']formers")
    found = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if pattern.search(p.read_text())]
    assert not found, f"load formers modules with plain imports, not strings: {found}"
