"""``formers list-models`` and ``formers recipes [NAME]``."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from formers.recipes.recipe import Recipe, list_recipes
from formers.registry import get_entry, list_models


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list-models", help="list registered model variants")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'transformer_*'")
    p.set_defaults(func=run_list_models)
    p = sub.add_parser("recipes", help="list built-in training recipes with their data, expected metric and time")
    p.add_argument("name", nargs="?", default=None, help="show one recipe in full: description, model, data, result")
    p.set_defaults(func=run_recipes)


def run_list_models(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; try `formers list-models` without a pattern")
    width = max(len(n) for n in names)
    for name in names:
        entry = get_entry(name)
        print(f"{name:<{width}}  {entry.family:<12} {entry.description}")
    return 0


def model_cell(model: dict[str, Any]) -> str:
    """The model a recipe trains: a registered name, or the pretrained weights a fine-tuning recipe starts from."""
    if model.get("name"):
        return str(model["name"])
    if model.get("pretrained"):
        return f"{model['pretrained']} (pretrained)"
    return "(none given)"


def data_cell(data: dict[str, Any]) -> str:
    """Where a recipe's data comes from, in words: ``bible-en-es en->es``, ``tinyshakespeare, gpt2 tokens``."""
    parts = []
    for key in ("corpus", "dataset"):
        if data.get(key):
            parts.append(str(data[key]))
    for key in ("text", "prepared", "train_file", "train_dir", "train_src", "train_tsv"):
        if data.get(key):
            parts.append(f"{key} {data[key]}")
    if data.get("src_lang") and data.get("tgt_lang"):
        parts[-1:] = [f"{parts[-1] if parts else ''} {data['src_lang']}->{data['tgt_lang']}".strip()]
    if data.get("tokenizer") not in (None, "char"):
        parts.append(f"{data['tokenizer']} tokens")
    return ", ".join(parts) or "(none given)"


def _table(header: list[str], rows: list[list[str]], widths: list[int]) -> str:
    """Rows of cells, each cell wrapped to its column's width; columns separated by two spaces."""
    lines = []
    for row in [header, *rows]:
        cells = [textwrap.wrap(cell, width) or [""] for cell, width in zip(row, widths)]
        for i in range(max(len(c) for c in cells)):
            line = "  ".join(f"{(c[i] if i < len(c) else ''):<{w}}" for c, w in zip(cells, widths))
            lines.append(line.rstrip())
    return "\n".join(lines)


def recipes_table(recipes: dict[str, Recipe]) -> str:
    """One row per recipe: name, task, model, data, metric, expected result, hardware and time."""
    rows = [
        [name, r.task, model_cell(r.model), data_cell(r.data), r.expected.metric, r.expected.value,
         r.expected.hardware, r.expected.time]
        for name, r in recipes.items()
    ]
    names = max(len(name) for name in recipes)
    return _table(["RECIPE", "TASK", "MODEL", "DATA", "METRIC", "EXPECTED", "HARDWARE", "TIME"], rows,
                  [names, 20, 23, 20, 28, 22, 20, 14])


def recipe_details(name: str, r: Recipe) -> str:
    """A recipe in full: description, model, data, expected result, and the command that runs it."""
    rows = [
        ("task", r.task),
        ("model", model_cell(r.model) + "".join(f", {k}={v}" for k, v in r.model.items() if k not in ("name",
                                                                                                    "pretrained"))),
        ("data", data_cell(r.data)),
        ("expected", f"{r.expected.metric}: {r.expected.value}"),
        ("hardware", r.expected.hardware),
        ("time", r.expected.time),
        ("notes", r.expected.notes),
        ("run it", f"formers train {name}  (--set key=value to change any setting)"),
    ]
    wrap = lambda text: textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="  ")  # noqa: E731
    body = "\n".join(
        textwrap.fill(v, 100, initial_indent=f"  {k:<9} ", subsequent_indent=" " * 12) for k, v in rows if v
    )
    return f"{name}\n{wrap(r.description)}\n{body}"


def run_recipes(args: argparse.Namespace) -> int:
    recipes = list_recipes()
    if args.name is not None:
        if args.name not in recipes:
            raise ValueError(f"unknown recipe {args.name!r}; built-in recipes: {', '.join(recipes)}")
        print(recipe_details(args.name, recipes[args.name]))
        return 0
    print(recipes_table(recipes))
    print("\n`formers recipes NAME` shows one in full; `formers train NAME` runs it.")
    return 0
