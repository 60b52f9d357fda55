"""archviz: see inside convolutional networks before you spend a GPU-hour on them.

In a notebook::

    import archviz
    archviz.summary("torchvision:resnet18")             # or a model in hand, with input_size=...
    archviz.cost(net, input_size=(64, 1, 28, 28))
    archviz.diagram("googlenet", depth=2)               # shown inline; .save("googlenet.svg")
    archviz.explain("vgg11", depth=2)                   # the arithmetic behind every number

``import archviz`` stays cheap: the API module (and torch, when needed) loads on first use.
"""

import functools
import importlib
import sys
import types

from archviz.version import __version__ as __version__

__all__ = ["summary", "cost", "explain", "diagram"]


def __getattr__(name: str):
    if name in ("summary", "explain", "diagram"):
        from archviz import api

        return getattr(api, name)
    raise AttributeError(f"module 'archviz' has no attribute {name!r}")


class _CostEntry:
    """``archviz.cost(...)`` is the API function, while ``archviz.cost`` is also the package
    ``archviz/cost/``: calling this runs the function, attributes come from the package."""

    def __init__(self) -> None:
        from archviz import api

        functools.update_wrapper(self, api.cost)

    def __call__(self, *args, **kwargs):
        return self.__wrapped__(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(importlib.import_module("archviz.cost"), name)

    def __repr__(self) -> str:
        return "<function archviz.cost>"


class _Archviz(types.ModuleType):
    @property
    def cost(self) -> _CostEntry:
        return _CostEntry()

    @cost.setter
    def cost(self, package: types.ModuleType) -> None:  # the import system records archviz/cost/ here; it stays in sys.modules
        pass


sys.modules[__name__].__class__ = _Archviz
