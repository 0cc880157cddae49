"""``formers list-models`` and ``formers recipes``."""

from __future__ import annotations

import argparse

from formers.recipes.recipe import list_recipes
from formers.registry import get_entry, list_models


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list-models", help="list registered model variants")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'transformer_*'")
    p.set_defaults(func=run_list_models)
    p = sub.add_parser("recipes", help="list built-in training recipes with their data, expected metric and time")
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


def run_recipes(args: argparse.Namespace) -> int:
    for name, r in list_recipes().items():
        e = r.expected
        print(f"{name}\n  {r.description}\n  model: {r.model.get('name')}  data: {r.data.get('corpus', r.data)}")
        print(f"  expected: {e.metric} {e.value}  on {e.hardware}  in {e.time}\n")
    return 0
