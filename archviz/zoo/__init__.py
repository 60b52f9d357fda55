"""The built-in architectures: one YAML spec file each in ``specs/``, registered by name.

Built-ins are read through the same loader as users' spec files, so the language the
zoo is written in is exactly the one users get.
"""

from __future__ import annotations

import fnmatch
from functools import cache
from pathlib import Path

from archviz.errors import UsageError
from archviz.spec import Spec, load_spec_file
from archviz.spec.loader import suggest

SPEC_DIR = Path(__file__).parent / "specs"
_REGISTRY: dict[str, Path] = {}


def register(name: str, path: Path) -> None:
    """Add a built-in; a second architecture with the same name is an error, not an override."""
    if name in _REGISTRY:
        raise ValueError(f"built-in architecture {name!r} is registered twice ({_REGISTRY[name]} and {path})")
    _REGISTRY[name] = path


for _path in sorted(SPEC_DIR.glob("*.yaml")):
    register(_path.stem, _path)


def list_models(pattern: str = "*") -> list[str]:
    """Names of the built-ins matching a shell-style wildcard, in a stable teaching order."""
    order = [
        *("lenet", "lenet_bn", "alexnet", "vgg11", "nin", "googlenet", "resnet18"),  # the seed chapter
        *("densenet", "resnext", "regnetx32"),  # the rest of d2l's chapter, at 96x96
        *("vgg16", "resnet50", "densenet121", "mobilenet_v2", "shufflenet_v2", "regnet_x_400mf", "unet"),  # full size
    ]
    names = sorted(_REGISTRY, key=lambda n: (order.index(n) if n in order else len(order), n))
    return [n for n in names if fnmatch.fnmatch(n, pattern)]


def is_builtin(name: str) -> bool:
    return name in _REGISTRY


def spec_path(name: str) -> Path:
    if name not in _REGISTRY:
        raise UsageError(f"unknown architecture {name!r}{suggest(name, _REGISTRY)} (built-ins: {', '.join(list_models())}).")
    return _REGISTRY[name]


@cache
def get_spec(name: str) -> Spec:
    """The built-in's spec, loaded once per process."""
    return load_spec_file(spec_path(name))
