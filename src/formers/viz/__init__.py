"""Visualisation: training curves, attention maps, detection overlays."""
