"""Runnable experiments that check the engine end to end (no torch import here)."""
