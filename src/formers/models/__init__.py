"""Model families; importing this package registers every variant."""

from formers.models import gpt, transformer  # noqa: F401
