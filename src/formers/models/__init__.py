"""Model families; importing this package registers every variant."""

from formers.models import (  # noqa: F401
    bert,
    detr,
    efficientformer,
    gpt,
    rnn,
    swin,
    tnt,
    transformer,
    vit,
    word2vec,
)
