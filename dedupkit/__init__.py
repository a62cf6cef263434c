"""dedupkit: clean image training datasets before a generative model learns to copy them."""

__version__ = "0.1.0"
