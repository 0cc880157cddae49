"""Inference: decoding (greedy, beam search, sampling) on KV caches, and prediction helpers."""
