"""Placeholder: the swin family is being written (see issue 5)."""
