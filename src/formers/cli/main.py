"""``formers`` entry point: parses the subcommand and turns user errors into one clear line (exit code 2).

Set ``FORMERS_DEBUG=1`` to see full tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys

from formers.cli import (
    checkpoints,
    classify,
    embed,
    generate,
    listing,
    prepare,
    train,
    translate,
    word_vectors,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="formers", description="The Transformer family: train, translate, evaluate.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_parser(sub)
    translate.add_translate_parser(sub)
    translate.add_evaluate_parser(sub)
    generate.add_parser(sub)
    checkpoints.add_parser(sub)
    listing.add_parsers(sub)
    prepare.add_parser(sub)
    classify.add_parser(sub)
    embed.add_parsers(sub)
    word_vectors.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        if os.environ.get("FORMERS_DEBUG"):
            raise
        print(f"formers {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
