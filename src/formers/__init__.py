"""formers: the Transformer family in PyTorch, readable, exact against reference implementations, fast."""

from formers import models  # noqa: F401  (importing the families registers them)
from formers.hub import from_pretrained, save_pretrained
from formers.interop.timm import from_timm
from formers.registry import create_model, list_models

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "from_pretrained", "from_timm", "list_models", "save_pretrained"]
