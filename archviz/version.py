"""archviz's version, a leaf every layer may read (the package's __init__ and the pages archviz writes)."""

__version__ = "0.1.0"
