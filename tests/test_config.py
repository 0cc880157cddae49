"""formers.config: field checks driven by annotations, and config files / --set values read without tracebacks."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest

from formers import config as config_module
from formers.config import (
    Between,
    Count,
    Probability,
    check_fields,
    from_dict,
    load_file,
    parse_set_args,
)


@dataclass
class _Config:
    num_layers: Count = 2
    dropout: Probability = 0.1
    eps: Annotated[float, Between(0.0, 1.0, low_open=True)] = 1e-5
    scale: float = 1.0
    width: Annotated[int, Between(1, 64)] | None = None
    depths: tuple[Count, ...] = (1, 2)
    kind: Literal["a", "b"] = "a"
    flag: bool = True
    name: str = "x"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self)


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"num_layers": 10**9}, ValueError, r"_Config\.num_layers must be in \[1, 1024\], got 1000000000"),
        ({"num_layers": 0}, ValueError, r"num_layers must be in \[1, 1024\], got 0"),
        ({"num_layers": -3}, ValueError, "got -3"),
        ({"num_layers": True}, TypeError, "num_layers must be an int, got True"),
        ({"num_layers": 2.0}, TypeError, "must be an int, got 2.0"),
        ({"num_layers": "2"}, TypeError, "must be an int"),
        ({"dropout": float("nan")}, ValueError, "dropout must be finite, got nan"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\), got 1.0"),
        ({"eps": 0.0}, ValueError, r"eps must be in \(0, 1\]"),
        ({"scale": float("inf")}, ValueError, "scale must be finite"),
        ({"scale": 10**400}, None, None),  # a huge int is finite; no OverflowError
        ({"scale": "1"}, TypeError, "scale must be a number"),
        ({"width": 65}, ValueError, r"width must be in \[1, 64\], got 65 \(or None\)"),
        ({"width": None}, None, None),
        ({"depths": (1, 0)}, ValueError, r"depths\[1\] must be in \[1, 1024\]"),
        ({"depths": (1,) * 2000}, ValueError, "at most 1024 entries"),
        ({"depths": 3}, TypeError, "depths must be a list"),
        ({"kind": "c"}, ValueError, r"kind must be one of \['a', 'b'\]"),
        ({"flag": 1}, TypeError, "flag must be true or false"),
        ({"name": 3}, TypeError, "name must be a string"),
        ({"extra": []}, TypeError, "extra must be a mapping"),
    ],
)
def test_check_fields_names_the_field_the_expected_and_the_actual_value(changes, error, message):
    if error is None:
        _Config(**changes)
        return
    with pytest.raises(error, match=message):
        _Config(**changes)


def test_between_reads_like_an_interval():
    assert str(Between(0, 1, high_open=True)) == "[0, 1)" and str(Between(0, 1, low_open=True)) == "(0, 1]"
    assert 0 in Between(0, 1, high_open=True) and 1 not in Between(0, 1, high_open=True)


def test_from_dict_refuses_long_lists_before_reading_them():
    with pytest.raises(ValueError, match="at most 1024 entries"):
        from_dict(_Config, {"depths": [1] * 10**6})


# ---------------------------------------------------------------- config files


@pytest.fixture
def no_hang():
    def alarm(signum, frame):
        raise TimeoutError("the call blocked")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.yaml", b"a: [1, 2\n", r"bad\.yaml is not valid YAML at line 2, column 1"),
        ("bad.yaml", b"a: 1\n  b: 2\n", r"bad\.yaml is not valid YAML at line 2"),
        ("tab.yaml", b"a:\n\t- 1\n", r"tab\.yaml is not valid YAML"),
        ("bin.yaml", b"\xff\xfe\x00a: 1", r"bin\.yaml is not UTF-8"),
        ("deep.yaml", b"[" * 50_000 + b"]" * 50_000, r"deep\.yaml is (nested too deeply|not valid YAML)"),
        ("deep.json", b"[" * 100_000, r"deep\.json is nested too deeply"),
        ("bad.json", b'{"a": }', r"bad\.json is not valid JSON"),
        ("list.yaml", b"- 1\n- 2\n", r"list\.yaml must hold a mapping"),
        ("empty.yaml", b"", r"empty\.yaml must hold a mapping"),
        ("python.yaml", b"a: !!python/object/apply:os.system ['true']\n", r"python\.yaml is not valid YAML"),
    ],
)
def test_load_file_gives_one_line_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_file(path)
    assert "\n" not in str(info.value)


def test_load_file_refuses_an_alias_bomb(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10**9 values expanded
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bomb\.yaml expands to more than 1,000,000 values"):
        load_file(tmp_path / "bomb.yaml")


def test_load_file_refuses_non_regular_and_huge_files(tmp_path, monkeypatch, no_hang):
    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(ValueError, match="not a regular file"):
        load_file(tmp_path / "fifo.yaml")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_file(tmp_path / "missing.yaml")
    monkeypatch.setattr(config_module, "MAX_FILE_BYTES", 10)
    (tmp_path / "big.yaml").write_text("a: 123456789012\n")
    with pytest.raises(ValueError, match="at most 10"):
        load_file(tmp_path / "big.yaml")


@pytest.mark.parametrize("item", ["model.num_layers=[1,", "a={b: ", "a=: :", "a=\t- x"])
def test_set_values_that_are_not_yaml_name_the_item(item):
    with pytest.raises(ValueError, match=r"--set .* is not valid YAML") as info:
        parse_set_args([item])
    assert "\n" not in str(info.value)
