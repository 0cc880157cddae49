"""``python -m formers ...``: the ``formers`` command, for environments without its console script."""

from formers.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
