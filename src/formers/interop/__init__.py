"""Converters from other libraries' checkpoints (declarative key maps, invertible).

Each converter module registers itself for the formats it reads (``@register_converter`` in
:mod:`formers.registry`): Hugging Face directories by ``model_type`` (read through
:func:`formers.interop.hf_directory.load_hf_directory`) and ``timm`` state dicts by model-name prefix (read through
:func:`formers.interop.timm.from_timm`). Importing this package imports them all.
"""

from __future__ import annotations

from formers.interop import bert, detr, efficientformer, gpt2, marian, swin, tnt, vit  # noqa: F401  (registration)
