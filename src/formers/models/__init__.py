"""Model families; importing this package registers every variant."""

from formers.models import bert, gpt, transformer  # noqa: F401
