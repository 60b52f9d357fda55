"""ARCH arguments: a built-in name, a spec file, ``torchvision:NAME`` or ``package.module:callable``.

Loading an ARCH never imports torch for built-ins and spec files; that is what makes
``archviz shapes googlenet`` answer faster than ``import torch``.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archviz import zoo
from archviz.errors import RunError, UsageError
from archviz.spec import Resolved, load_spec_file, resolve
from archviz.spec.loader import suggest
from archviz.trace.record import Shape, Trace

if TYPE_CHECKING:
    from torch import nn

TORCHVISION_DEFAULT_INPUT: Shape = (1, 3, 224, 224)


@dataclass(frozen=True)
class Arch:
    """A loaded architecture: either a resolved spec, or a factory returning an nn.Module."""

    name: str
    kind: str  # "builtin", "file", "torchvision", "callable"
    default_input: Shape
    description: str = ""
    resolved: Resolved | None = None
    factory: Callable[[], nn.Module] | None = field(default=None, compare=False)
    params: Mapping[str, Any] = field(default_factory=dict)

    def build(self, input_shape: Shape | None = None, device: str | None = None) -> nn.Module:
        """A fresh model with real (randomly initialised) weights, or on ``device="meta"`` none at all."""
        if self.resolved is not None:
            from archviz.build import build

            return build(self.resolved, input_shape or self.default_input, device)
        from archviz.trace.from_module import instantiate

        return instantiate(self.factory, self.name, device or "cpu")

    def trace(self, input_shape: Shape | None = None) -> Trace:
        """Shapes, params and FLOPs on ``input_shape`` without computing anything."""
        shape = tuple(input_shape or self.default_input)
        if self.resolved is not None:
            from archviz.trace.from_spec import trace_spec

            return trace_spec(self.resolved, shape, self.name)
        from archviz.trace.from_module import trace_module

        return trace_module(self.build(device="meta"), shape, self.name)


def load_arch(text: str, params: Iterable[str] | Mapping[str, Any] | None = None) -> Arch:
    """Resolve an ARCH argument; ``params`` are ``KEY=VALUE`` strings (``-p``) or a mapping."""
    text = (text or "").strip()
    if not text:
        raise UsageError("no architecture given; name a built-in (see `archviz list`), a spec file, torchvision:NAME or module:callable.")
    if zoo.is_builtin(text):
        spec = zoo.get_spec(text)
        resolved = resolve(spec, params)
        return Arch(text, "builtin", resolved.default_input, spec.description, resolved, params=resolved.params)
    if text.endswith((".yaml", ".yml")) or Path(text).exists():
        spec = load_spec_file(text)
        resolved = resolve(spec, params)
        return Arch(spec.name, "file", resolved.default_input, spec.description, resolved, params=resolved.params)
    if text.startswith("torchvision:"):
        return _torchvision(text.partition(":")[2], _kwargs(params))
    if ":" in text:
        return _callable(text, _kwargs(params))
    raise UsageError(
        f"unknown architecture {text!r}{suggest(text, zoo.list_models())} "
        f"(built-ins: {', '.join(zoo.list_models())}; or a spec .yaml file, torchvision:NAME, package.module:callable)."
    )


def _kwargs(params: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``-p`` values for a Python constructor: ints, floats, true/false, else text."""
    if isinstance(params, Mapping):
        return dict(params)
    out = {}
    for item in params or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"-p {item!r} must be written KEY=VALUE, e.g. -p num_classes=10.")
        out[key.strip()] = _literal(raw.strip())
    return out


def _literal(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _torchvision(name: str, kwargs: dict[str, Any]) -> Arch:
    from torchvision import models

    available = models.list_models(module=models)
    if name not in available:
        raise UsageError(
            f"torchvision has no classification model {name!r}{suggest(name, available)} (torchvision.models.list_models() lists the {len(available)} it has)."
        )

    def make() -> Any:
        # googlenet and inception_v3 warn about a future change of their default init: noise here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return models.get_model(name, weights=None, **kwargs)

    factory = _checked_factory(make, f"torchvision:{name}", kwargs)
    return Arch(f"torchvision:{name}", "torchvision", TORCHVISION_DEFAULT_INPUT, f"torchvision.models.{name}", factory=factory, params=kwargs)


def _callable(text: str, kwargs: dict[str, Any]) -> Arch:
    module_name, _, attr = text.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import module {module_name!r} for {text!r} ({exc}); check the name and that it is on PYTHONPATH.") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}; write package.module:callable.")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"{text!r} is a {type(target).__name__}, not a callable; point at a function or class that returns an nn.Module.")
    factory = _checked_factory(lambda: target(**kwargs), text, kwargs)
    return Arch(
        text, "callable", TORCHVISION_DEFAULT_INPUT, (target.__doc__ or "").strip().splitlines()[0] if target.__doc__ else text, factory=factory, params=kwargs
    )


def _checked_factory(make: Callable[[], Any], name: str, kwargs: dict[str, Any]) -> Callable[[], nn.Module]:
    def factory() -> nn.Module:
        from torch import nn

        try:
            model = make()
        except TypeError as exc:
            if kwargs:
                raise UsageError(f"{name} does not accept the parameters {sorted(kwargs)} ({exc}).") from None
            raise RunError(f"{name} could not be constructed: {exc}.") from None
        if not isinstance(model, nn.Module):
            raise UsageError(f"{name} returned a {type(model).__name__}, not a torch.nn.Module.")
        return model

    return factory
