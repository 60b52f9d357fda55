"""archviz: see inside convolutional networks before you spend a GPU-hour on them."""

__version__ = "0.1.0"
