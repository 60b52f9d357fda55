"""ARCH arguments: a built-in name, a spec file, ``torchvision:NAME`` or ``package.module:callable``.

Loading an ARCH never imports torch for built-ins and spec files; that is what makes
``archviz shapes googlenet`` answer faster than ``import torch``.

Code that is not archviz's (a user's module, a torchvision constructor) runs inside
``user_code``: its prints go to stderr (so ``--format json`` stays pure JSON), a slow
build gets a sign of life after a second, and its errors name the callable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archviz import zoo
from archviz.errors import RunError, UsageError, raised_text, show_traceback
from archviz.params import parse_params
from archviz.shape import InputSpec, as_inputs
from archviz.spec import Resolved, load_spec_file, resolve
from archviz.spec.gcpause import paused_gc
from archviz.spec.loader import suggest
from archviz.trace.record import Shape, TensorInfo, Trace

if TYPE_CHECKING:
    from torch import nn

TORCHVISION_DEFAULT_INPUT: Shape = (1, 3, 224, 224)
SIGN_OF_LIFE_S = 1.0


_signalled: list[str] = []  # sign-of-life lines printed by this process: one is enough


@contextlib.contextmanager
def user_code(message: str | None = None, after_s: float = SIGN_OF_LIFE_S, *, always: bool = False) -> Iterator[None]:
    """Run code that is not archviz's: its prints go to stderr, and ``message ...`` appears on stderr if it takes over ``after_s``.

    One sign of life per process (``always`` for a step the user asked to be slow, such as --compute).
    """
    err = sys.stderr
    timer = None

    def signal() -> None:
        if always or not _signalled:
            _signalled.append(message)
            print(f"{message} ...", file=err, flush=True)

    if message:
        timer = threading.Timer(after_s, signal)
        timer.daemon = True
        timer.start()
    try:
        with contextlib.redirect_stdout(err):
            yield
    finally:
        if timer is not None:
            timer.cancel()


@dataclass(frozen=True)
class Arch:
    """A loaded architecture: either a resolved spec, or a factory returning an nn.Module."""

    name: str
    kind: str  # "builtin", "file", "torchvision", "callable", "module"
    default_input: Shape
    description: str = ""
    resolved: Resolved | None = None
    factory: Callable[[], nn.Module] | None = field(default=None, compare=False)
    params: Mapping[str, Any] = field(default_factory=dict)
    default_inputs: tuple[InputSpec, ...] = ()  # when the model takes more than one float ``default_input``
    title: str = ""  # the name tables and diagrams show when it is not ``name``: a callable's display name, or --title
    _native: dict[str, Shape] = field(default_factory=dict, compare=False, repr=False)  # a callable's own input, found once

    @property
    def display_name(self) -> str:
        return self.title or self.name

    def titled(self, title: str | None) -> Arch:
        """This architecture shown as ``title`` (``--title``); None keeps its own name."""
        if title is None:
            return self
        if not title.strip():
            raise UsageError("--title is empty; give the name to show, e.g. --title 'ConvNeXt-T'.")
        return dataclasses.replace(self, title=title.strip())

    @property
    def inputs(self) -> tuple[InputSpec, ...]:
        """The inputs used when none is given: for a callable, what the model says it takes (see native_input)."""
        if self.default_inputs:
            return self.default_inputs
        if self.kind == "callable":
            if "input" not in self._native:
                self._native["input"] = native_input(self.build(device="meta"), self.default_input)
            return (InputSpec(self._native["input"]),)
        return (InputSpec(self.default_input),)

    def input_specs(self, inputs: Any = None) -> tuple[InputSpec, ...] | dict[str, InputSpec]:
        """``inputs`` as InputSpecs (positional tuple or keyword dict); None means the architecture's own."""
        return self.inputs if inputs is None else as_inputs(inputs)

    def build(self, input_shape: Shape | None = None, device: str | None = None) -> nn.Module:
        """A fresh model with real (randomly initialised) weights, or on ``device="meta"`` none at all."""
        if self.resolved is not None:
            from archviz.build import build

            return build(self.resolved, input_shape or self.default_input, device)
        from archviz.trace.from_module import instantiate

        with user_code(f"building {self.name}" if self.kind != "module" else None):
            return instantiate(self.factory, self.name, device or "cpu")

    def trace(self, inputs: Any = None, *, compute: bool = False, data: Any = None) -> Trace:
        """Shapes, params and FLOPs on ``inputs`` without computing anything (``compute``: with real CPU tensors).

        ``inputs``: a shape such as ``(1, 3, 224, 224)``, an InputSpec or ``"2x32:int64"``, a
        list of them for a model with several inputs, or a dict of them for keyword inputs.
        ``data``: with ``compute``, real tensors to run on (else random ones of ``inputs``' shapes).
        """
        specs = self.input_specs(inputs)
        if self.resolved is not None:
            return self._trace_spec(specs)
        from archviz.trace.from_module import trace_module

        model = self.build(device="cpu" if compute else "meta")
        message = f"tracing {self.name} with real tensors on the CPU" if compute else f"tracing {self.name}" if self.kind != "module" else None
        with user_code(message, always=compute):
            trace = trace_module(model, specs, self.name, compute=compute, data=data, own=self.kind != "module")
        return dataclasses.replace(trace, title=self.title) if self.title else trace

    def _trace_spec(self, specs: tuple[InputSpec, ...] | dict[str, InputSpec]) -> Trace:
        from archviz.trace.from_spec import trace_spec

        if isinstance(specs, dict) or len(specs) != 1 or not specs[0].is_float:
            given = ", ".join(str(s) for s in (specs.values() if isinstance(specs, dict) else specs))
            raise UsageError(f"{self.name} takes one floating-point input (e.g. --input {InputSpec(self.default_input)}), not {given}.")
        spec = specs[0]
        if len(spec.shape) != len(self.default_input):
            rank = len(self.default_input)
            raise UsageError(f"{self.name} takes a {rank}-D input such as --input {InputSpec(self.default_input)}, not {spec} ({len(spec.shape)}-D).")
        with paused_gc():
            trace = trace_spec(self.resolved, spec.shape, self.name)
        if self.title:
            trace = dataclasses.replace(trace, title=self.title)
        if spec.dtype == "float32":
            return trace
        outputs = tuple(TensorInfo(o.name, o.shape, spec.dtype) for o in trace.outputs)
        return dataclasses.replace(trace, inputs=(TensorInfo("input", spec.shape, spec.dtype),), outputs=outputs)

    @classmethod
    def from_module(cls, model: nn.Module, name: str | None = None) -> Arch:
        """An nn.Module in hand; archviz traces a weight-free meta copy and never changes the module."""
        label = name or type(model).__name__
        return cls(label, "module", TORCHVISION_DEFAULT_INPUT, (type(model).__doc__ or "").strip().split("\n")[0], factory=lambda: model)


def load_arch(text: Any, params: Iterable[str] | Mapping[str, Any] | None = None) -> Arch:
    """Resolve an ARCH argument; ``params`` are ``KEY=VALUE`` strings (``-p``, values read as YAML) or a mapping.

    An ``nn.Module`` in hand is accepted too (see ``Arch.from_module``).
    """
    if text is not None and not isinstance(text, str | os.PathLike):
        from torch import nn

        if isinstance(text, nn.Module):
            if params:
                raise UsageError(f"parameters {sorted(params)} apply to a name or a callable; a module in hand is already built.")
            return Arch.from_module(text)
        raise UsageError(f"cannot load a {type(text).__name__} as an architecture; give a name, spec file, torchvision:NAME, module:callable or nn.Module.")
    text = os.fspath(text or "").strip()
    if not text:
        raise UsageError("no architecture given; name a built-in (see `archviz list`), a spec file, torchvision:NAME or module:callable.")
    if zoo.is_builtin(text):
        with paused_gc():
            spec = zoo.get_spec(text)
            resolved = resolve(spec, params)
        return Arch(text, "builtin", resolved.default_input, spec.description, resolved, params=resolved.params)
    if text.endswith((".yaml", ".yml")) or Path(text).exists():
        with paused_gc():
            spec = load_spec_file(text)
            resolved = resolve(spec, params)
        return Arch(spec.name, "file", resolved.default_input, spec.description, resolved, params=resolved.params)
    if text.startswith("torchvision:"):
        return _torchvision(text.partition(":")[2].strip(), parse_params(params))
    if ":" in text:
        return _callable(text, parse_params(params))
    raise UsageError(
        f"unknown architecture {text!r}{suggest(text, zoo.list_models())} "
        f"(built-ins: {', '.join(zoo.list_models())}; or a spec .yaml file, torchvision:NAME, package.module:callable)."
    )


def torchvision_inputs(name: str, builder: Callable[..., Any]) -> tuple[InputSpec, ...]:
    """A sensible default input per torchvision family (its builder's module says which)."""
    family = builder.__module__.split(".")[2] if builder.__module__.count(".") >= 2 else ""
    if family == "detection":
        return (InputSpec((1, 3, 480, 640)),)  # images; the model resizes them itself (GeneralizedRCNNTransform)
    if family == "segmentation":
        return (InputSpec((1, 3, 520, 520)),)  # torchvision's segmentation reference crop
    if family == "optical_flow":
        return (InputSpec((1, 3, 224, 224)), InputSpec((1, 3, 224, 224)))  # two frames; RAFT needs sides divisible by 8
    if family == "video":
        side = 112 if name in ("r3d_18", "mc3_18", "r2plus1d_18") else 224
        return (InputSpec((1, 3, 16, side, side)),)  # N x C x T x H x W
    side = 299 if "inception" in name else 224
    return (InputSpec((1, 3, side, side)),)


def _torchvision(name: str, kwargs: dict[str, Any]) -> Arch:
    from torchvision import models

    available = models.list_models()
    if name not in available:
        raise UsageError(f"torchvision has no model {name!r}{suggest(name, available)} (torchvision.models.list_models() lists the {len(available)} it has).")
    builder = models.get_model_builder(name)
    accepted = inspect.signature(builder).parameters
    # weights=None and no backbone weights: archviz never downloads anything.
    defaults = {"weights": None, **({"weights_backbone": None} if "weights_backbone" in accepted else {})}
    given = {**defaults, **kwargs}

    def make() -> Any:
        # googlenet and inception_v3 warn about a future change of their default init: noise here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return builder(**given)

    factory = _checked_factory(make, f"torchvision:{name}", kwargs)
    inputs = torchvision_inputs(name, builder)
    return Arch(
        f"torchvision:{name}",
        "torchvision",
        inputs[0].shape,
        f"torchvision.models.{name}",
        factory=factory,
        params=kwargs,
        default_inputs=inputs if len(inputs) > 1 else (),
    )


def _callable(text: str, kwargs: dict[str, Any]) -> Arch:
    module_name, _, attr = text.partition(":")
    if module_name.strip() == "archviz" or module_name.strip().startswith("archviz."):
        raise UsageError(f"{text!r} is part of archviz itself, not a model; name a built-in (see `archviz list`), a spec file or your own module:callable.")
    try:
        with user_code(f"building {text}"):
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import module {module_name!r} for {text!r} ({exc}); check the name and that it is on PYTHONPATH.") from None
    except SystemExit as exc:
        raise RunError(f"importing {module_name!r} called sys.exit({exc.code!r}); archviz cannot load a module that ends the program.") from None
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:
        show_traceback(exc)
        raise RunError(f"importing {module_name!r} raised {raised_text(exc)}.") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}; write package.module:callable.")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"{text!r} is a {type(target).__name__}, not a callable; point at a function or class that returns an nn.Module.")
    try:
        inspect.signature(target).bind(**kwargs)
    except TypeError as exc:
        raise UsageError(f"{text} does not accept the parameters {sorted(kwargs)} ({exc}).") from None
    except ValueError:  # no signature to check (a builtin): the call itself will say
        pass
    factory = _checked_factory(lambda: target(**kwargs), text, kwargs)
    description = (target.__doc__ or "").strip().splitlines()[0] if target.__doc__ else text
    return Arch(text, "callable", TORCHVISION_DEFAULT_INPUT, description, factory=factory, params=kwargs, title=callable_title(module_name, kwargs))


def first_layer_input(model: Any) -> tuple[int | None, int | None]:
    """(channels, size) that the model's first conv or linear layer reads; None where it does not say.

    The first in definition order (a stem is defined first in torchvision and timm models). A conv
    gives the channels; a linear layer on flattened images gives 1 channel and the side when its
    input features are a square (784 = 28 x 28), else 3 channels when a third of them is one.
    """
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d):
            return module.in_channels, None
        if isinstance(module, nn.Linear):
            for channels in (1, 3):
                side = math.isqrt(module.in_features // channels)
                if module.in_features % channels == 0 and side * side * channels == module.in_features:
                    return channels, side
            return None, None
    return None, None


def native_size(model: Any) -> int | None:
    """The square input size a timm model was made for (its ``pretrained_cfg["input_size"]``, e.g. 384 for
    swin_base_patch4_window12_384, whose patch embedding refuses any other), or None."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if isinstance(size, list | tuple) and len(size) == 3 and size[1] == size[2] and isinstance(size[1], int) and size[1] > 0:
        return size[1]
    return None


def native_input(model: Any, fallback: Shape) -> Shape:
    """The image batch a model built by a callable takes: channels from its first conv, the side
    from a timm model's ``pretrained_cfg`` (384 for a ``*_384`` model) or a first ``Linear(784)``;
    ``fallback`` (1x3x224x224) for what it does not say."""
    channels, side = first_layer_input(model)
    side = native_size(model) or side
    if len(fallback) != 4 or (channels is None and side is None):
        return fallback
    return (fallback[0], channels or fallback[1], side or fallback[2], side or fallback[3])


# Parameters by which a model factory names the network it builds (timm's create_model(model_name), ...).
_NAME_PARAMS = ("model_name", "model", "arch", "architecture", "variant", "name")


def callable_title(module_name: str, kwargs: Mapping[str, Any]) -> str:
    """``timm``, ``{model_name: "convnext_tiny"}`` -> ``"timm convnext_tiny"``: a factory titled by what it builds ("" if nothing names it)."""
    for key in _NAME_PARAMS:
        value = kwargs.get(key)
        if isinstance(value, str) and value.strip():
            return f"{module_name.split('.')[0]} {value.strip()}"
    return ""


def _checked_factory(make: Callable[[], Any], name: str, kwargs: dict[str, Any]) -> Callable[[], nn.Module]:
    def factory() -> nn.Module:
        from torch import nn

        try:
            model = make()
        except TypeError as exc:
            if kwargs and "argument" in str(exc):
                raise UsageError(f"{name} does not accept the parameters {sorted(kwargs)} ({exc}).") from None
            raise
        if not isinstance(model, nn.Module):
            raise UsageError(f"{name} returned a {type(model).__name__}, not a torch.nn.Module.")
        return model

    return factory
