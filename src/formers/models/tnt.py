"""Placeholder: the tnt family is being written (see issue 5)."""
