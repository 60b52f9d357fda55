"""archviz: see inside convolutional networks before you spend a GPU-hour on them.

In a notebook::

    import archviz
    archviz.summary("torchvision:resnet18")             # or a model in hand, with input_size=...
    archviz.cost(net, input_size=(64, 1, 28, 28))
    archviz.diagram("googlenet", depth=2)               # shown inline; .save("googlenet.svg")
    archviz.explain("vgg11", depth=2)                   # the arithmetic behind every number

``import archviz`` stays cheap: the API module (and torch, when needed) loads on first use.
"""

from archviz.version import __version__ as __version__

__all__ = ["summary", "cost", "explain", "diagram"]


def __getattr__(name: str):
    if name in __all__:
        from archviz import api

        return getattr(api, name)
    raise AttributeError(f"module 'archviz' has no attribute {name!r}")
