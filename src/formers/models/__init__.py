"""Model families; importing this package registers every variant."""

from formers.models import bert, detr, efficientformer, gpt, rnn, swin, tnt, transformer, vit  # noqa: F401
