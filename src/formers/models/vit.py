"""Placeholder: the vit family is being written (see issue 5)."""
