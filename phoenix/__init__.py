"""Phoenix: rebuild the forge VPS from code, prove it, and move DNS to it."""

# 0.9: complete for the first disaster and drilled in the lab; 1.0 once a real one is behind it
__version__ = "0.9.0"
