"""``formers`` entry point: parses the subcommand and turns every failure into one clear line (exit code 2).

User errors (``ValueError``, ``TypeError``, a missing file), file-system failures (a full or read-only disk, a
permission denied: the message names the path) and running out of memory print ``formers <command>: error: ...``;
anything else is printed the same way with its exception type, so a bug still shows what it is. Set
``FORMERS_DEBUG=1`` to see full tracebacks.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from typing import NoReturn

from formers.cli import (
    attention,
    checkpoints,
    classify,
    classify_text,
    detect,
    embed,
    generate,
    listing,
    prepare,
    serve,
    train,
    translate,
    word_vectors,
)


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit code 2, as every formers error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="formers", description="The Transformer family: train, translate, evaluate.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_parser(sub)
    translate.add_translate_parser(sub)
    translate.add_evaluate_parser(sub)
    generate.add_parser(sub)
    checkpoints.add_parser(sub)
    listing.add_parsers(sub)
    prepare.add_parser(sub)
    classify.add_parser(sub)
    classify_text.add_parser(sub)
    detect.add_parser(sub)
    embed.add_parsers(sub)
    word_vectors.add_parsers(sub)
    attention.add_parser(sub)
    serve.add_parser(sub)
    return parser


def version() -> str:
    """The installed package's version (its metadata), or the source tree's when formers runs uninstalled."""
    try:
        return importlib.metadata.version("formers")
    except importlib.metadata.PackageNotFoundError:
        from formers import __version__

        return f"{__version__} (not installed)"


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):  # a log file or pipe sees each line when it is printed, not minutes later
        sys.stdout.reconfigure(line_buffering=True)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`formers list-models | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 1
    except Exception as e:  # every failure becomes one line; FORMERS_DEBUG=1 shows the traceback
        if os.environ.get("FORMERS_DEBUG"):
            raise
        print(f"formers {args.command}: error: {describe_error(e)}", file=sys.stderr)
        return 2


def describe_error(error: Exception) -> str:
    """One line saying what went wrong: the message of a user error, the path and reason of a file-system error."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        message = f"{error.strerror}: {error.filename}"  # e.g. "No space left on device: runs/x/checkpoints"
        if error.filename2 is not None:
            message += f" -> {error.filename2}"
    elif isinstance(error, MemoryError):
        message = f"out of memory{': ' + str(error) if str(error) else ''}"
    elif isinstance(error, RecursionError):
        message = f"input nested too deeply ({error})"
    elif isinstance(error, (ValueError, TypeError, OSError, RuntimeError)):
        message = str(error) or type(error).__name__
    else:  # not an error formers raises on purpose: say which exception it was
        message = f"{type(error).__name__}: {error}"
    return " ".join(message.split())  # one line, whatever the message held


if __name__ == "__main__":
    sys.exit(main())
