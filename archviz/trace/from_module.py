"""Trace any nn.Module on the meta device: shapes, params, FLOPs and the dataflow graph.

The user's model is never touched: we trace a meta-device copy made without copying
weights, and hooks are registered globally (not on the user's modules) for the one call.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from archviz.errors import RunError
from archviz.shape import format_shape
from archviz.spec import ops
from archviz.trace.record import Node, Op, Shape, Trace

# Functions whose results are metadata or that every forward calls in passing.
_IGNORED_FUNCTIONS = {"__get__", "size", "dim", "numel", "__len__", "__format__", "__repr__", "is_floating_point", "contiguous", "type"}
_FUNCTION_ALIASES = {"iadd": "add", "radd": "add", "imul": "mul", "rmul": "mul"}


def instantiate(factory: Callable[[], nn.Module], name: str, device: str = "cpu") -> nn.Module:
    """Call a model factory; on ``meta`` fall back to a real build plus a weight-free meta copy.

    Some constructors compute with tensors and fail under the meta device (torchvision's
    regnet), and a callable may return a module that already exists: never convert that one.
    """
    if device != "meta":
        with torch.device(device):
            return factory()
    try:
        with torch.device("meta"):
            model = factory()
    except (NotImplementedError, RuntimeError):
        model = factory()
    return model if _all_meta(model) else meta_copy(model)


def _all_meta(model: nn.Module) -> bool:
    return all(t.is_meta for t in _tensors(model))


def _tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    yield from model.parameters()
    yield from model.buffers()


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers live on the meta device.

    The deepcopy memo is pre-filled with meta stand-ins, so no weight is ever copied
    and shared parameters stay shared.
    """
    memo: dict[int, Any] = {}
    for p in model.parameters():
        if id(p) not in memo:
            memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        if id(b) not in memo:
            memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def _kind(module: nn.Module) -> str:
    return getattr(module, "_archviz_kind", None) or type(module).__name__


def module_attrs(module: nn.Module) -> dict[str, Any]:
    """The hyperparameters a reader cares about, named as torch names them (the op table's list).

    A subclass of a known class (a library's ``Conv2dSame``) reports its base class's attributes.
    """
    for cls in type(module).__mro__:
        if cls.__name__ in ops.TORCH_TYPES:
            return ops.read_attrs(cls.__name__, module)
    return {}


def _flat_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _flat_tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flat_tensors(v)]
    return []


class _Recorder(TorchFunctionMode):
    """Global forward hooks + function interception, feeding nodes and graph ops."""

    def __init__(self, model: nn.Module, counter: FlopCounterMode):
        super().__init__()
        self.paths = {}
        for path, module in model.named_modules():
            self.paths.setdefault(id(module), path)
        self.leaves = {id(m) for m in model.modules() if next(m.children(), None) is None}
        self.counter = counter
        self.nodes: list[Node | None] = []
        self.ops: list[Op] = []
        self.producer: dict[int, str] = {}
        self.keep: list[torch.Tensor] = []  # keeps ids unique while the trace runs
        self.stack: list[tuple[nn.Module, int | None, int, tuple[Shape, ...]]] = []
        self.seen: set[int] = set()
        self.calls: dict[str, int] = {}
        self.in_leaf = 0

    def failed_in(self) -> tuple[str, nn.Module, tuple[Shape, ...]] | None:
        """The innermost module still running: where an exception was raised."""
        if not self.stack:
            return None
        module, _, _, shapes = self.stack[-1]
        return self.paths[id(module)], module, shapes

    def _op_id(self, base: str) -> str:
        count = self.calls.get(base, 0)
        self.calls[base] = count + 1
        return base if count == 0 else f"{base}#{count}"

    def _sources(self, tensors: list[torch.Tensor]) -> tuple[str, ...]:
        return tuple(self.producer[id(t)] for t in tensors if id(t) in self.producer)

    def _produce(self, value: Any, op_id: str) -> None:
        for t in _flat_tensors(value):
            self.producer[id(t)] = op_id
            self.keep.append(t)

    def pre(self, module: nn.Module, args: tuple) -> None:
        mid = id(module)
        if mid not in self.paths:
            return
        shapes = tuple(tuple(t.shape) for t in _flat_tensors(args))
        index = None
        if mid not in self.seen:
            self.seen.add(mid)
            index = len(self.nodes)
            self.nodes.append(None)
        if mid in self.leaves:
            self.in_leaf += 1
        self.stack.append((module, index, self.counter.get_total_flops(), shapes))

    def post(self, module: nn.Module, args: tuple, output: Any) -> None:
        mid = id(module)
        if mid not in self.paths:
            return
        _, index, flops_before, shapes = self.stack.pop()
        path = self.paths[mid]
        outs = _flat_tensors(output)
        out_shape = tuple(outs[0].shape) if outs else ()
        is_leaf = mid in self.leaves
        if is_leaf:
            self.in_leaf -= 1
            op_id = self._op_id(path)
            self.ops.append(Op(op_id, "module", _kind(module), path, self._sources(_flat_tensors(args)), out_shape))
            self._produce(output, op_id)
        if index is not None:
            params = {id(p): p for p in module.parameters()}
            trainable = sum(p.numel() for p in params.values() if p.requires_grad)
            depth = 0 if path == "" else path.count(".") + 1
            flops = self.counter.get_total_flops() - flops_before
            node = Node(path, _kind(module), depth, is_leaf, shapes, out_shape, sum(p.numel() for p in params.values()), trainable, flops, module_attrs(module))
            self.nodes[index] = node

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flops_before = self.counter.get_total_flops()
        result = func(*args, **kwargs)
        if self.in_leaf or not self.stack:
            return result
        name = getattr(func, "__name__", str(func)).strip("_")
        if name in _IGNORED_FUNCTIONS or getattr(func, "__name__", "") in _IGNORED_FUNCTIONS:
            return result
        inputs = self._sources(_flat_tensors(args) + _flat_tensors(kwargs))
        outs = _flat_tensors(result)
        if not inputs or not outs:
            return result
        name = _FUNCTION_ALIASES.get(name, name.removesuffix("_") if name.endswith("_") and not name.startswith("_") else name)
        module = self.paths[id(self.stack[-1][0])]
        op_id = self._op_id(f"{module}:{name}")
        flops = self.counter.get_total_flops() - flops_before
        self.ops.append(Op(op_id, "function", name, module, inputs, tuple(outs[0].shape), flops))
        self._produce(result, op_id)
        return result


def trace_module(model: nn.Module, input_shape: Shape, arch: str = "model") -> Trace:
    """Trace ``model`` on a meta input of ``input_shape``; RunError names the layer if it cannot run."""
    meta = model if _all_meta(model) else meta_copy(model)
    meta.eval()  # batch-1 BatchNorm1d fails in train mode; shapes do not depend on the mode
    try:
        return _run(meta, tuple(input_shape), arch)
    except RunError:
        raise
    except Exception as exc:  # translated into one sentence naming the layer
        raise _explain(meta, tuple(input_shape), arch, exc) from None


def _run(meta: nn.Module, input_shape: Shape, arch: str) -> Trace:
    counter = FlopCounterMode(display=False)
    recorder = _Recorder(meta, counter)
    X = torch.empty(input_shape, device="meta")
    recorder.producer[id(X)] = "input"
    ops_input = Op("input", "input", "Input", "", (), input_shape)
    pre = nn.modules.module.register_module_forward_pre_hook(recorder.pre)
    post = nn.modules.module.register_module_forward_hook(recorder.post)
    try:
        with torch.no_grad(), counter, recorder:
            Y = meta(X)
    except Exception as exc:
        exc.archviz_failed_in = recorder.failed_in()  # type: ignore[attr-defined]
        raise
    finally:
        pre.remove()
        post.remove()
    outs = _flat_tensors(Y)
    out_shape = tuple(outs[0].shape) if outs else ()
    output = Op("output", "output", "Output", "", recorder._sources(outs[:1]), out_shape)
    nodes = tuple(n for n in recorder.nodes if n is not None)
    params = {id(p): p for p in meta.parameters()}
    total = sum(p.numel() for p in params.values())
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    return Trace(arch, input_shape, nodes, (ops_input, *recorder.ops, output), total, trainable)


def _runs(meta: nn.Module, shape: Shape) -> bool:
    try:
        _run(meta, shape, "probe")
        return True
    except Exception:
        return False


def smallest_square_input(meta: nn.Module, input_shape: Shape, limit: int = 2048) -> Shape | None:
    """The smallest NxCxSxS that runs, by binary search (assumes larger inputs keep working)."""
    n, c = input_shape[:2]
    if not _runs(meta, (n, c, limit, limit)):
        return None
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi) // 2
        if _runs(meta, (n, c, mid, mid)):
            hi = mid
        else:
            lo = mid + 1
    return (n, c, lo, lo)


def _explain(meta: nn.Module, input_shape: Shape, arch: str, exc: Exception) -> RunError:
    failed = getattr(exc, "archviz_failed_in", None)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    head = f"{arch} cannot run on input {format_shape(input_shape)}"
    if failed is None:
        return RunError(f"{head}: {reason}.")
    path, module, shapes = failed
    where = f"layer {path or '<model>'!r} ({_kind(module)})"
    got = shapes[0] if shapes else ()
    if isinstance(module, nn.Conv2d) and len(got) == 4 and got[1] != module.in_channels:
        fix = format_shape((got[0], module.in_channels, *got[2:])) if path.count(".") <= 1 else None
        hint = f"; use --input {fix}" if fix and _runs(meta, (got[0], module.in_channels, *input_shape[2:])) else ""
        return RunError(f"{head}: {where} expects {module.in_channels} input channels but gets {got[1]}{hint}.")
    if isinstance(module, nn.Linear) and got and got[-1] != module.in_features:
        return RunError(f"{head}: {where} expects {module.in_features} input features but gets {got[-1]} (from shape {list(got)}).")
    if len(input_shape) == 4:
        smallest = smallest_square_input(meta, input_shape)
        if smallest and math.prod(smallest[2:]) > math.prod(input_shape[2:]):
            return RunError(f"{head}: {where} gets {list(got)}, too small ({reason}); the smallest input that works is {format_shape(smallest)}.")
    return RunError(f"{head}: {where} failed on input {list(got)}: {reason}.")
