"""Phoenix: rebuild the forge VPS from code, prove it, and move DNS to it."""

__version__ = "0.1.0"
