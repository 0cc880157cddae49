"""Placeholder: the efficientformer family is being written (see issue 5)."""
