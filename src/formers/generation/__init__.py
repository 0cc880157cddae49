"""Decoding loops over a model interface, below the families so that ``model.generate`` can call them.

- :mod:`formers.generation.causal_lm`: ``generate`` for decoder-only models (greedy, sampling, left padding,
  stop conditions, streaming) on the model's KV cache.
- :mod:`formers.generation.graphed`: the static-cache decoder replayed as a CUDA graph.
- :mod:`formers.generation.seq2seq`: greedy and beam search for encoder-decoder models.

Nothing here knows a family: a model qualifies by its methods (``init_cache``, ``encode``/``decode``) and
``config`` fields, so the families import these loops and not the other way round.
"""
