"""Model families; importing this package registers every variant."""

from formers.models import transformer  # noqa: F401
