"""Trace any nn.Module on the meta device: shapes, params, FLOPs and the dataflow graph.

The user's model is never touched: we trace a meta-device copy made without copying
weights, and hooks are registered globally (not on the user's modules) for the one call.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from archviz import compat
from archviz.errors import NeedsValues, RunError, constructor_error, show_traceback
from archviz.shape import InputSpec, as_inputs, format_inputs
from archviz.spec import ops
from archviz.trace.record import Node, Op, Shape, TensorInfo, Trace

# Functions whose results are metadata or that every forward calls in passing.
_IGNORED_FUNCTIONS = {"__get__", "size", "dim", "numel", "__len__", "__format__", "__repr__", "is_floating_point", "contiguous", "type"}
_FUNCTION_ALIASES = {"iadd": "add", "radd": "add", "imul": "mul", "rmul": "mul"}


def instantiate(factory: Callable[[], nn.Module], name: str, device: str = "cpu") -> nn.Module:
    """Call a model factory; on ``meta`` fall back to a real build plus a weight-free meta copy.

    Some constructors compute with tensors and fail under the meta device (torchvision's
    regnet), and a callable may return a module that already exists: never convert that one.
    Any other error (or a sys.exit) in the constructor becomes one sentence naming ``name``.
    """

    try:
        if device != "meta":
            with torch.device(device):
                return factory()
        try:
            with torch.device("meta"):
                model = factory()
        except (NotImplementedError, RuntimeError):
            with _weights_on_meta():
                model = factory()
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:  # SystemExit and the user's own BaseException subclasses too
        raise constructor_error(name, exc) from None
    return model if _all_meta(model) else meta_copy(model)


@contextlib.contextmanager
def _weights_on_meta() -> Iterator[None]:
    """Build on the CPU, but every parameter and buffer moves to meta as it is registered.

    For constructors that compute with tensors (torchvision's regnet derives its widths
    with torch ops and ``.tolist()``): those tensors stay real, the weights never exist, so
    regnet_y_128gf (644 M parameters) builds without allocating its 2.6 GB.
    """
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def buffer(self: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(self, name, tensor.to("meta") if tensor is not None else None, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer  # type: ignore[method-assign]


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
    return [t for _, t in named_tensors(value)]


def named_tensors(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, torch.Tensor]]:
    """Every tensor in a (nested) output, with its path: ``0``, ``out``, ``0.boxes``.

    Tuples, lists, namedtuples (torchvision's GoogLeNetOutputs), dicts (segmentation's
    OrderedDict, detection's list of dicts), dataclasses and plain objects holding tensors
    (detection's ImageList) are walked in order, a few levels deep.
    """
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    if depth > 6 or isinstance(value, nn.Module | str | bytes | int | float | bool | type(None)):
        return []
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        items = list(zip(value._fields, value, strict=True))
    elif isinstance(value, list | tuple):
        items = [(str(i), v) for i, v in enumerate(value)]
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        items = [(k, v) for k, v in vars(value).items() if not k.startswith("_")]
    else:
        return []
    return [pair for key, v in items for pair in named_tensors(v, f"{prefix}.{key}" if prefix else key, depth + 1)]


def _function_name(func: Any) -> str:
    """``torch.nonzero``, ``Tensor.item``, ``Tensor.__bool__`` (an ``if`` on a tensor): how a reader knows it."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or str(func)
    owner, _, short = name.rpartition(".")
    if owner in ("TensorBase", "_TensorBase", "Tensor"):
        return f"Tensor.{short}"
    if owner == "_VariableFunctionsClass" or getattr(func, "__module__", None) == "torch":
        return f"torch.{short}"
    if getattr(func, "__module__", None) == "torch.nn.functional":
        return f"torch.nn.functional.{short}"
    return name


# aten ops (by the words of their names) that multiply and add like a matrix product: under the
# convention such an op counts, so one the counter has no formula for is an omission, not a zero.
_CONTRACTION_WORDS = frozenset(
    "mm bmm addmm baddbmm addbmm addmv mv dot vdot vecdot ger addr outer matmul tensordot einsum bilinear trilinear "
    "cdist fft lstm gru rnn conv convolution conv1d conv2d conv3d attention linear".split()
)


def _is_contraction(func_packet: Any) -> bool:
    words = set(str(getattr(func_packet, "__name__", func_packet)).split(".")[-1].split("_"))
    return bool(words & _CONTRACTION_WORDS) and not words & {"upsample", "backward", "grid"}


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
        self.versions: list[dict[int, int]] = []  # per running module: its input tensors' versions
        self.seen: set[int] = set()
        self.calls: dict[str, int] = {}
        self.in_leaf = 0
        self.seen_at: list[int] = []  # per running module: how many aten ops the counter had seen at its start
        self.unruled: list[str] = []

    def _unruled_since(self, start: int) -> bool:
        """Whether an aten op seen since ``start`` is a matrix product the counter has no formula for."""
        return any(_is_contraction(op) and not compat.has_flop_formula(self.counter, op) for op in self.counter.archviz_seen[start:])

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

    def _produce(self, value: Any, op_id: str, keep: set[int] = frozenset()) -> None:
        for t in _flat_tensors(value):
            if id(t) in keep:  # an input passed through where it could not be aliased: keep its producer
                continue
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
        self.seen_at.append(len(self.counter.archviz_seen))
        self.versions.append({id(t): compat.tensor_version(t) for t in _flat_tensors(args)})

    def post(self, module: nn.Module, args: tuple, output: Any) -> None:
        mid = id(module)
        if mid not in self.paths:
            return
        _, index, flops_before, shapes = self.stack.pop()
        versions = self.versions.pop()
        seen_at = self.seen_at.pop()
        path = self.paths[mid]
        outs = _flat_tensors(output)
        out_shape = tuple(outs[0].shape) if outs else ()
        is_leaf = mid in self.leaves
        replaced = None
        if is_leaf:
            # A layer that returns one of its inputs untouched (nn.Identity) hands back the very
            # tensor object its caller may read again elsewhere: filing that object as the
            # layer's output would rewire every later reader of the input. Its output becomes
            # an alias of the input instead (same data, a tensor of its own). A layer that
            # changed the tensor in place (ReLU(inplace=True)) really did produce it.
            passed = {id(t) for t in outs if id(t) in versions and compat.tensor_version(t) == versions[id(t)]}
            if passed:
                replaced = output = _alias(output, passed)  # still inside the leaf: not recorded as a function
            self.in_leaf -= 1
            op_id = self._op_id(path)
            if self.counter.get_total_flops() == flops_before and self._unruled_since(seen_at):
                self.unruled.append(path)
            self.ops.append(Op(op_id, "module", _kind(module), path, self._sources(_flat_tensors(args)), out_shape))
            self._produce(output, op_id, keep=passed)
        if index is not None:
            params = {id(p): p for p in module.parameters()}
            trainable = sum(p.numel() for p in params.values() if p.requires_grad)
            depth = 0 if path == "" else path.count(".") + 1
            flops = self.counter.get_total_flops() - flops_before
            node = Node(path, _kind(module), depth, is_leaf, shapes, out_shape, sum(p.numel() for p in params.values()), trainable, flops, module_attrs(module))
            self.nodes[index] = node
        return replaced  # None keeps the module's own output

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flops_before = self.counter.get_total_flops()
        seen_at = len(self.counter.archviz_seen)
        try:
            result = func(*args, **kwargs)
        except Exception as exc:  # remember the innermost torch function that failed (e.g. nonzero on meta)
            if not hasattr(exc, "archviz_op"):
                exc.archviz_op = _function_name(func)  # type: ignore[attr-defined]
            raise
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
        if flops == 0 and self._unruled_since(seen_at):
            self.unruled.append(op_id)
        self.ops.append(Op(op_id, "function", name, module, inputs, tuple(outs[0].shape), flops))
        self._produce(result, op_id)
        return result


def _alias(value: Any, ids: set[int]) -> Any:
    """``value`` with each tensor whose id is in ``ids`` replaced by a view of all of it."""
    if isinstance(value, torch.Tensor):
        return value.view_as(value) if id(value) in ids else value
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_alias(v, ids) for v in value)
    if isinstance(value, list):
        return [_alias(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _alias(v, ids) for k, v in value.items()}
    return value


Inputs = Sequence[InputSpec] | Mapping[str, InputSpec]

# --compute allocates the inputs for real; refuse more than this for them alone.
MAX_COMPUTE_INPUT_BYTES = 4 * 2**30


def input_names(model: nn.Module, inputs: tuple[InputSpec, ...] | dict[str, InputSpec]) -> list[str]:
    """``input`` for one positional input; forward's own argument names for several."""
    if isinstance(inputs, dict):
        return list(inputs)
    if len(inputs) == 1:
        return ["input"]
    try:
        params = [
            p.name for p in inspect.signature(model.forward).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        params = []
    names = params[: len(inputs)] if len(params) >= len(inputs) and all(params[: len(inputs)]) else []
    return names if len(set(names)) == len(inputs) else [f"input_{i}" for i in range(len(inputs))]


def _make_tensor(spec: InputSpec, device: str, generator: torch.Generator | None) -> torch.Tensor:
    # Integer inputs are zeros: a valid index for any embedding or gather; floats are noise when computed.
    if not spec.is_float or device == "meta":
        return torch.zeros(spec.shape, dtype=spec.torch_dtype, device=device)
    return torch.randn(spec.shape, dtype=torch.float32, generator=generator).to(spec.torch_dtype)


def trace_module(model: nn.Module, inputs: Any, arch: str = "model", *, compute: bool = False, data: Any = None, own: bool = False) -> Trace:
    """Trace ``model`` on meta inputs (or, with ``compute``, real CPU tensors); RunError names the layer if it cannot run.

    ``inputs``: a shape, an InputSpec, a sequence of them (positional) or a mapping (keyword);
    ``data``: with ``compute``, the tensors themselves, in the same order or with the same keys.
    The model is left as it was: a meta trace runs on a weight-free copy (cast to the inputs'
    float dtype when they all share one other than float32), and the train/eval flags of
    every module are restored. A computed trace runs on a deep copy (a lazy layer would
    initialise, a forward that counts calls would count), unless ``own``: archviz built the
    model for this trace and nobody else holds it.
    """
    specs = as_inputs(inputs)
    if data is not None and not compute:
        data = None  # a meta trace needs only the shapes and dtypes, which ``inputs`` has
    if compute:
        total = sum(s.nbytes for s in (specs.values() if isinstance(specs, dict) else specs))
        if total > MAX_COMPUTE_INPUT_BYTES:
            raise RunError(f"--compute would allocate {total / 2**30:.1f} GiB for the inputs alone (limit 4 GiB); use a smaller --input.")
        target = model if own else _private_copy(model, arch)
    else:
        target = meta_copy(model)  # even of a meta model: the user's module is never changed
        floats = {s.torch_dtype for s in (specs.values() if isinstance(specs, dict) else specs) if s.is_float}
        if len(floats) == 1 and floats != {torch.float32}:
            target.to(floats.pop())  # `--input 8x128x256:bf16` means the model runs in bf16
    flags = [(m, m.training) for m in target.modules()]
    target.eval()  # batch-1 BatchNorm1d fails in train mode; shapes do not depend on the mode
    try:
        return _run(target, specs, arch, "cpu" if compute else "meta", data)
    except RunError:
        raise
    except Exception as exc:  # translated into one sentence naming the layer
        show_traceback(exc)
        error = _explain(target, specs, arch, exc, compute)
        partial = getattr(exc, "archviz_partial", None)
        if partial is not None:  # the trace up to the failing layer: `archviz diagram` draws it (issue 16)
            error.partial, error.failed_op = partial
        raise error from None
    except SystemExit as exc:
        raise RunError(f"{arch}'s forward called sys.exit({exc.code!r}); archviz cannot trace a model that ends the program.") from None
    finally:
        for module, training in flags:
            module.training = training


def _private_copy(model: nn.Module, arch: str) -> nn.Module:
    """A deep copy of the user's model to compute on (issue 20: ``compute=True`` changed the model)."""
    import copy

    try:
        return copy.deepcopy(model)
    except Exception as exc:
        raise RunError(
            f"{arch} cannot be copied ({type(exc).__name__}: {str(exc)[:120]}), and archviz computes on a copy so as never to change your model; "
            "trace it without compute=True, or pass a factory (module:callable) instead of the module."
        ) from None


def _run(model: nn.Module, specs: tuple[InputSpec, ...] | dict[str, InputSpec], arch: str, device: str = "meta", data: Any = None) -> Trace:
    counter = compat.forward_flop_counter()  # totals only: its module tracker trips on CaiT under no_grad
    recorder = _Recorder(model, counter)
    names = input_names(model, specs)
    values = list(specs.values()) if isinstance(specs, dict) else list(specs)
    generator = torch.Generator().manual_seed(0) if device != "meta" else None
    if device != "meta":
        device = next((t.device.type for t in _tensors(model)), "cpu")
    if data is not None:  # the caller's own tensors (archviz.summary(input_data=..., compute=True)), used as they are
        tensors = list(data.values()) if isinstance(data, Mapping) else list(data)
    else:
        tensors = [_make_tensor(s, device, generator) for s in values]
    single = len(values) == 1 and not isinstance(specs, dict)
    input_ops = []
    for name, spec, X in zip(names, values, tensors, strict=True):
        op_id = "input" if single else f"input:{name}"
        recorder.producer[id(X)] = op_id
        input_ops.append(Op(op_id, "input", "Input", "", (), spec.shape))
    args, kwargs = ((), dict(zip(names, tensors, strict=True))) if isinstance(specs, dict) else (tuple(tensors), {})
    pre = nn.modules.module.register_module_forward_pre_hook(recorder.pre)
    post = nn.modules.module.register_module_forward_hook(recorder.post)
    try:
        with torch.no_grad(), counter, recorder:
            Y = model(*args, **kwargs)
    except BaseException as exc:
        exc.archviz_failed_in = recorder.failed_in()  # type: ignore[attr-defined]
        if isinstance(exc, Exception):
            exc.archviz_partial = _partial_trace(model, recorder, input_ops, names, values, arch, exc)  # type: ignore[attr-defined]
        raise
    finally:
        pre.remove()
        post.remove()
    named = named_tensors(Y)
    if len(named) == 1 and named[0][0] == "":
        named = [("output", named[0][1])]
    outputs = tuple(TensorInfo(name or "output", tuple(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in named)
    output_ops = tuple(
        Op("output" if len(named) == 1 else f"output:{name}", "output", "Output", "", recorder._sources([t]), tuple(t.shape)) for name, t in named
    )
    if not output_ops:  # a model that returns no tensor: an output vertex with nothing to show
        output_ops = (Op("output", "output", "Output", "", (), ()),)
    recorded = [n for n in recorder.nodes if n is not None]
    nodes = _complete_nodes(model, recorded)
    params = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in params.values())
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    infos = tuple(TensorInfo(name, spec.shape, spec.dtype) for name, spec in zip(names, values, strict=True))
    first = values[0].shape if values else ()
    return Trace(arch, first, nodes, (*input_ops, *recorder.ops, *output_ops), total, trainable, inputs=infos, outputs=outputs, unruled=tuple(recorder.unruled))


def _complete_nodes(model: nn.Module, recorded: list[Node]) -> tuple[Node, ...]:
    """Every module, in pre-order: called ones as recorded, plus the ones the forward never called.

    A ModuleList, a ModuleDict or any module that only holds children is never called
    itself; it gets a row at its real depth, with its children under it, as torchinfo
    shows it. Unused modules (an auxiliary head in eval mode) and parameters held
    directly by a module with children (ViT's class_token) get rows too, so that the
    rows at any depth hold every parameter exactly once. Siblings are ordered by when
    the forward first reached them, uncalled ones last in definition order.
    """
    by_path = {n.path: n for n in recorded}
    order = {n.path: i for i, n in enumerate(recorded)}
    seen: set[int] = set()
    first_call: dict[int, float] = {}

    def reached(module: nn.Module, path: str) -> float:
        if id(module) in first_call:
            return first_call[id(module)]
        first_call[id(module)] = math.inf
        own = order.get(path, math.inf)
        below = [reached(child, f"{path}.{name}" if path else name) for name, child in module.named_children()]
        first_call[id(module)] = min([own, *below])
        return first_call[id(module)]

    reached(model, "")
    out: list[Node] = []

    def visit(module: nn.Module, path: str, depth: int) -> int:
        """Append the rows of ``module`` and everything under it; return its forward FLOPs (for containers)."""
        seen.add(id(module))
        index = len(out)
        out.append(None)  # type: ignore[arg-type]
        children = [(name, child) for name, child in module.named_children() if id(child) not in seen]
        children.sort(key=lambda item: first_call.get(id(item[1]), math.inf))  # stable: ties keep definition order
        flops = 0
        own = list(module.named_parameters(recurse=False)) if children else []
        for name, p in own:
            if id(p) in seen:
                continue
            seen.add(id(p))
            out.append(
                Node(
                    f"{path}.{name}" if path else name,
                    "Parameter",
                    depth + 1,
                    True,
                    (),
                    tuple(p.shape),
                    p.numel(),
                    p.numel() if p.requires_grad else 0,
                    called=False,
                )
            )
        for name, child in children:
            if id(child) in seen:
                continue
            flops += visit(child, f"{path}.{name}" if path else name, depth + 1)
        node = by_path.get(path)
        if node is None:  # never called: its record is made here
            params = {id(p): p for p in module.parameters()}
            numel = sum(p.numel() for p in params.values())
            trainable = sum(p.numel() for p in params.values() if p.requires_grad)
            node = Node(path, _kind(module), depth, not children, (), (), numel, trainable, flops, module_attrs(module), called=False)
        out[index] = node
        return node.flops

    visit(model, "", 0)
    return tuple(out)


def smallest_input(meta: nn.Module, spec: InputSpec, limit: int | None = None) -> InputSpec | None:
    """The smallest N x C x S x S (x S...) of ``spec``'s rank that runs, by binary search on S.

    Only for one input of rank 3 or more (N, C, then spatial sizes); assumes larger sizes keep working.
    Probed in eval mode, as :func:`trace_module` traces (shapes do not depend on the mode; batch
    norm at batch 1 in train mode would otherwise rule out every size that ends in 1x1).
    """
    rank = len(spec.shape)
    if rank < 3:
        return None
    flags = [(m, m.training) for m in meta.modules()]
    meta.eval()
    try:
        return _smallest(meta, spec, rank, limit)
    finally:
        for module, training in flags:
            module.training = training


def _smallest(meta: nn.Module, spec: InputSpec, rank: int, limit: int | None) -> InputSpec | None:
    limit = limit or {3: 1 << 16, 4: 2048, 5: 256}.get(rank, 64)
    n, c = spec.shape[:2]

    def at(size: int) -> InputSpec:
        return InputSpec((n, c, *([size] * (rank - 2))), spec.dtype)

    if not _runs(meta, at(limit)):
        return None
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi) // 2
        if _runs(meta, at(mid)):
            hi = mid
        else:
            lo = mid + 1
    return at(lo)


def smallest_square_input(meta: nn.Module, input_shape: Shape, limit: int = 2048) -> Shape | None:
    """The smallest NxCxSxS that runs (kept for callers that hold a plain shape)."""
    found = smallest_input(meta, InputSpec(tuple(input_shape)), limit if len(input_shape) == 4 else None)
    return found.shape if found else None


def _runs(meta: nn.Module, spec: InputSpec) -> bool:
    try:
        _run(meta, (spec,), "probe")
        return True
    except Exception:
        return False


def _is_meta_limit(exc: Exception) -> bool:
    """The meta device cannot run this op (it needs real values), as opposed to a bad input."""
    text = str(exc)
    if "meta" not in text.lower():
        return False
    return isinstance(exc, NotImplementedError) or "item()" in text or "data-dependent" in text or "'Meta' backend" in text


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)  # public classes, no private _ConvNd


def _partial_trace(
    model: nn.Module, recorder: _Recorder, input_ops: list[Op], names: list[str], values: list[InputSpec], arch: str, exc: Exception
) -> tuple[Trace, str] | None:
    """The trace up to the layer that raised, ending in an op for that layer, and the op's id (a partial diagram).

    None when there is nothing to draw (no layer was running) or the record cannot be completed.
    """
    if not recorder.stack:
        return None
    try:
        module = recorder.stack[-1][0]
        path = recorder.paths[id(module)]
        sources = tuple(dict.fromkeys(recorder.producer[i] for i in recorder.versions[-1] if i in recorder.producer))
        if id(module) in recorder.leaves:
            failed = Op(recorder._op_id(path), "module", _kind(module), path, sources, ())
        else:  # inside a block's own forward: the function that raised, or the forward itself
            name = str(getattr(exc, "archviz_op", "") or "forward").rpartition(".")[2]
            failed = Op(recorder._op_id(f"{path}:{name}"), "function", name, path, sources, ())
        nodes = _complete_nodes(model, [n for n in recorder.nodes if n is not None])
        params = {id(p): p for p in model.parameters()}
        total = sum(p.numel() for p in params.values())
        trainable = sum(p.numel() for p in params.values() if p.requires_grad)
        infos = tuple(TensorInfo(name, spec.shape, spec.dtype) for name, spec in zip(names, values, strict=True))
        first = values[0].shape if values else ()
        trace = Trace(arch, first, nodes, (*input_ops, *recorder.ops, failed), total, trainable, inputs=infos, outputs=(TensorInfo("output", ()),))
        return trace, failed.id
    except Exception:  # a partial diagram is a courtesy: never hide the real error behind a second one
        return None


def _explain(model: nn.Module, specs: tuple[InputSpec, ...] | dict[str, InputSpec], arch: str, exc: Exception, compute: bool) -> RunError:
    failed = getattr(exc, "archviz_failed_in", None)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    raised = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    values = list(specs.values()) if isinstance(specs, dict) else list(specs)
    head = f"{arch} cannot run on input {format_inputs(values)}"
    if failed is None:
        where = "its forward"
    elif failed[0]:
        where = f"layer {failed[0]!r} ({_kind(failed[1])})"
    else:
        where = f"the forward of {_kind(failed[1])}"
    if not compute and _is_meta_limit(exc):
        op = getattr(exc, "archviz_op", None)
        if op in ("Tensor.__bool__", "Tensor.item", "Tensor.tolist", "Tensor.__int__", "Tensor.__float__", "Tensor.__index__"):
            what = f"uses a tensor's value in Python ({op}, e.g. an `if` on a tensor)"
        else:
            what = f"calls {op}(), whose output shape depends on the values" if op else "needs a tensor's values"
        problem = f"{arch} cannot be traced on the meta device, which has shapes but no values: {where} {what}"
        return NeedsValues(
            f"{problem}; rerun with --compute to trace with real tensors on the CPU (it runs the forward pass: slower, and needs the memory of a real run).",
            problem,
        )
    if failed is None:
        return RunError(f"{head}: {where} raised {raised}.")
    path, module, shapes = failed
    got = shapes[0] if shapes else ()
    single = len(values) == 1 and not isinstance(specs, dict)
    if isinstance(module, _CONVS) and len(got) >= 2 and got[1] != module.in_channels:
        hint = ""
        first = values[0]
        if single and len(first.shape) == len(got) and first.shape[1] == got[1] and path.count(".") <= 1:
            fix = InputSpec((first.shape[0], module.in_channels, *first.shape[2:]), first.dtype)
            hint = f"; use --input {fix}" if _runs(model, fix) else ""
        return RunError(f"{head}: {where} expects {module.in_channels} input channels but gets {got[1]}{hint}.")
    if isinstance(module, nn.Linear) and got and got[-1] != module.in_features:
        return RunError(f"{head}: {where} expects {module.in_features} input features but gets {got[-1]} (from shape {list(got)}).")
    if single and not compute and values[0].is_float and len(values[0].shape) >= 3:
        smallest = smallest_input(model, values[0])
        if smallest and math.prod(smallest.shape[2:]) > math.prod(values[0].shape[2:]):
            return RunError(f"{head}: {where} gets {list(got)}, too small ({reason}); the smallest input that works is {smallest}.")
    return RunError(f"{head}: {where} raised {raised} on input {list(got)}.")
