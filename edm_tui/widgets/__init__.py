"""Widgets of the edm-tui dashboard."""
