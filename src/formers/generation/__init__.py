"""Decoding loops over a model interface, below the families so that ``model.generate`` can call them.

- :mod:`formers.generation.causal_lm`: ``generate`` for decoder-only models (greedy, sampling, left padding,
  stop conditions, streaming); on CUDA it takes the static path below by default, elsewhere the eager loop.
- :mod:`formers.generation.static_lm`: the static-cache decoder replayed as a CUDA graph, cached on the model.
- :mod:`formers.generation.sampling`: option checks, the filtered distribution, seeded counter-based draws made
  on the device, and the token picker every path shares (so the paths pick the same tokens).
- :mod:`formers.generation.stopping`: end-of-row bookkeeping (eos, ``stop``, streamer) shared by every path.
- :mod:`formers.generation.graphed`: :class:`GraphedGreedyDecoder`, a decoder object you hold yourself.
- :mod:`formers.generation.seq2seq`: greedy and beam search for encoder-decoder models (eager, or on a static
  state with each step a CUDA graph).

Nothing here knows a family: a model qualifies by its methods (``init_cache``, ``encode``/``decode``) and
``config`` fields, so the families import these loops and not the other way round.
"""
