"""Model families; importing this package registers every variant."""

from formers.models import bert, efficientformer, gpt, rnn, swin, tnt, transformer, vit, word2vec  # noqa: F401
