"""Run a training step without memory or compute, and account for every byte it allocates.

The mechanism is PyTorch's own MemTracker (torch/distributed/_tools/mem_tracker.py): a
TorchDispatchMode sees every tensor an operator returns, and a weak reference on its
untyped storage says when autograd, the optimizer or Python lets go of it. Running the
real PyTorch code (autograd's saved tensors, the optimizer's own arithmetic) on the meta
device is what makes the prediction exact, where a formula would be a guess.

What the dispatcher cannot see is the scratch memory a kernel allocates and frees inside
one operator (oneDNN's reordered copies on a CPU, for instance); ``workspace`` adds it,
per operator, from :mod:`archviz.estimate.workspace`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archviz.compat import (
    TorchDispatchMode,
    WeakIdKeyDictionary,
    fake_mode,
    fused_adam_on_meta,
    is_fake,
    mkldnn_rnn_layer,
    replaced_sdpa,
    replaced_vf_lstm,
    sdpa_kernels,
    tree_leaves,
)
from archviz.errors import RunError, TooLarge
from archviz.estimate.settings import StepSettings
from archviz.estimate.workspace import channels_last_conv, lstm_workspace_bytes
from archviz.step import make_optimizer, train_step

Workspace = Callable[[Any, tuple, dict, Any], int]

PARAMS, BUFFERS, INPUT, GRADS, OPTIMIZER, ACTIVATIONS, TEMPORARIES = (
    "params",
    "buffers",
    "input",
    "grads",
    "optimizer",
    "activations",
    "temporaries",
)
SCRATCH = "scratch"  # a kernel's scratch memory inside one op (never a storage; the workspace rules)


@dataclass(eq=False)
class Storage:
    """One allocation: its size as the allocator counts it, and when it lived."""

    nbytes: int
    category: str
    phase: str
    module: str | None  # the module that allocated it (see StorageTracker.owner), None outside every module
    born: int
    died: int | None = None
    op: str = ""  # the aten op that returned it ("" for weights and inputs)

    def alive_at(self, clock: int) -> bool:
        return self.born <= clock and (self.died is None or self.died > clock)


@dataclass
class Peak:
    bytes: int = 0
    clock: int = 0
    phase: str = ""
    workspace: int = 0  # kernel scratch on top of the live tensors at the peak
    op: str = ""
    module: str | None = None  # the module whose op held the kernel scratch


class StorageTracker(TorchDispatchMode):
    """Live bytes of every storage operators create, with the peak and what was alive at it.

    ``rounding``: the allocator's granularity (CUDA's caching allocator rounds every block up
    to a multiple of 512 bytes; the CPU allocator does not round). ``count_host``: whether
    real CPU tensors count (they do when predicting for a CPU; on a GPU the optimizer's
    step counters live in host memory and do not).
    """

    def __init__(self, rounding: int = 1, count_host: bool = True, workspace: Workspace | None = None):
        super().__init__()
        self.rounding = rounding
        self.count_host = count_host
        self.workspace = workspace
        self.storages: list[Storage] = []
        self._index: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.clock = 0
        self.live = 0
        self.phase = "setup"
        self.modules: list[str] = []
        self.backward_module: str | None = None  # the module whose backward runs (set by module_scope's gradient hooks)
        self.peak = Peak()
        self.largest_workspace = 0
        self.measuring = False

    # -- accounting -------------------------------------------------------------------
    def _counts(self, t: torch.Tensor) -> bool:
        if is_fake(t) or t.device.type == "meta":
            return True
        return self.count_host and t.device.type == "cpu"

    def _round(self, n: int) -> int:
        if n == 0 or self.rounding == 1:
            return n
        return math.ceil(n / self.rounding) * self.rounding

    def track(self, t: torch.Tensor, category: str | None = None, module: str | None = None, op: str = "") -> Storage | None:
        """Count ``t``'s storage (once), or relabel it when it is counted already; ``module`` made it."""
        if not isinstance(t, torch.Tensor) or not self._counts(t):
            return None
        storage = t.untyped_storage()
        known = self._index.get(storage)
        if known is not None:
            if category:
                known[0].category = category
            return known[0]
        self.clock += 1
        record = Storage(self._round(storage.nbytes()), category or "", self.phase, module, self.clock, op=op)
        ref = weakref.ref(storage, functools.partial(self._release, record))
        self._index[storage] = (record, ref)
        self.storages.append(record)
        self.live += record.nbytes
        self._observe(0, "")
        return record

    def _release(self, record: Storage, _ref: Any) -> None:
        self.clock += 1
        record.died = self.clock
        self.live -= record.nbytes

    def _observe(self, workspace: int, op: str, module: str | None = None) -> None:
        if not self.measuring:
            return
        if workspace > self.largest_workspace:
            self.largest_workspace = workspace
        if self.live + workspace > self.peak.bytes:
            self.peak = Peak(self.live + workspace, self.clock, self.phase, workspace, op, module)

    def start_window(self) -> None:
        """From now on, track the peak (it starts at what is alive now)."""
        self.measuring = True
        self.peak = Peak(self.live, self.clock, self.phase)
        self.largest_workspace = 0

    def alive_at(self, clock: int) -> list[Storage]:
        return [s for s in self.storages if s.alive_at(clock)]

    def module_of(self, t: Any) -> str | None:
        known = self._index.get(t.untyped_storage()) if isinstance(t, torch.Tensor) and self._counts(t) else None
        return known[0].module if known is not None else None

    def owners(self, args: tuple, n: int) -> list[str | None]:
        """Which module each of an op's ``n`` outputs is charged to.

        Inside a module's forward: that module (MemTracker's rule). In backward: the module
        whose output gradient arrived last (module_scope's hooks). Elsewhere (the optimizer
        step) an output belongs to the module of the tensor it was computed from: the i-th
        tensor of a ``_foreach`` op's first list, else the first tensor argument.
        """
        if self.modules:
            return [self.modules[-1]] * n
        if self.phase == "backward":
            return [self.backward_module] * n
        first = args[0] if args else None
        if isinstance(first, list | tuple) and len(first) == n and all(isinstance(a, torch.Tensor) for a in first):
            return [self.module_of(a) for a in first]
        for a in tree_leaves(args):
            if isinstance(a, torch.Tensor) and (owner := self.module_of(a)) is not None:
                return [owner] * n
        return [None] * n

    # -- the dispatcher ---------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.count_host and func is torch.ops.aten.convolution.default and out.device.type == "meta" and channels_last_conv(args[0], args[1]):
            # a CPU convolution returns channels-last when its input or weight is (ATen's cpu_conv_use_channels_last);
            # torch's meta kernel returns NCHW, and every later op's strides (and kernel copies) would follow it
            out = torch.empty_like(out, memory_format=torch.channels_last)
        leaves = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if leaves:
            name = func.overloadpacket.__name__
            for t, owner in zip(leaves, self.owners(args, len(leaves)), strict=True):
                self.track(t, module=owner, op=name)
        if self.workspace is not None and self.measuring:
            extra = self.workspace(func, args, kwargs, out)
            if extra:
                self._observe(self._round(extra), func.overloadpacket.__name__, self.owners(args, 1)[0])
        return out

    @contextlib.contextmanager
    def in_phase(self, name: str) -> Iterator[None]:
        self.phase = name
        self.backward_module = None  # backward starts with the loss's gradient, outside every module
        yield


@contextlib.contextmanager
def module_scope(model: nn.Module, tracker: StorageTracker) -> Iterator[None]:
    """Tell the tracker which module is running, forward and backward, so every storage can be charged to a block.

    Forward: a stack pushed and popped by module hooks. Backward: a hook on each module's
    output tensors fires when their gradient arrives, right before autograd runs that
    module's backward (torch's ModuleTracker does the same with multi-grad hooks); a tensor
    that is also its container's output keeps the innermost module's hook.
    """
    paths = {id(m): p for p, m in model.named_modules()}
    hooked: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def pre(module: nn.Module, args: Any) -> None:
        if id(module) in paths:
            tracker.modules.append(paths[id(module)])

    def entered(path: str) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            tracker.backward_module = path

        return hook

    def post(module: nn.Module, args: Any, output: Any) -> None:
        if id(module) in paths and tracker.modules:
            path = tracker.modules.pop()
            for t in tree_leaves(output):
                if isinstance(t, torch.Tensor) and t.requires_grad and t not in hooked:
                    hooked[t] = True
                    t.register_hook(entered(path))

    handles = [nn.modules.module.register_module_forward_pre_hook(pre), nn.modules.module.register_module_forward_hook(post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        tracker.modules.clear()
        tracker.backward_module = None


@contextlib.contextmanager
def attention_backend(on_gpu: bool) -> Iterator[None]:
    """Run ``scaled_dot_product_attention`` with the kernel the target device would pick.

    On meta tensors torch takes the math path, which keeps the whole (batch, heads, L, L)
    attention matrix for backward; real devices run fused kernels that keep only the
    output and a log-sum-exp. Torch's choice (sdp_utils): on a CPU the flash kernel when
    there is no dropout; on a GPU flash attention for fp16/bf16 without a mask, else the
    memory-efficient kernel. Anything else keeps the math path. The function is swapped in
    ``torch.nn.functional`` for the simulation only (that is where nn.MultiheadAttention
    and most models look it up).
    """
    flash_cpu, flash_cuda, efficient = sdpa_kernels()

    def make(original: Callable) -> Callable:
        def fused(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
            if enable_gqa or query.dim() != 4 or (not on_gpu and dropout_p != 0.0):
                return original(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
            device = query.device.type
            if device == "cpu" and torch.is_autocast_enabled(device):  # sdpa is on autocast's lower-precision list
                low = torch.get_autocast_dtype(device)
                query, key, value = query.to(low), key.to(low), value.to(low)
            if not on_gpu:
                return flash_cpu(query, key, value, 0.0, is_causal, attn_mask=attn_mask, scale=scale)[0]
            if query.dtype in (torch.float16, torch.bfloat16) and attn_mask is None:
                return flash_cuda(query, key, value, dropout_p, is_causal, False, scale=scale)[0]
            return efficient(query, key, value, attn_mask, True, dropout_p, is_causal, scale=scale)[0]

        return fused

    with replaced_sdpa(make):
        yield


def _release_workspace(node: Any, *_: Any) -> None:
    node.metadata.pop("onednn_workspace", None)


_LSTM = 2  # ideep::rnn_kind::LSTM, the mode ATen passes to mkldnn_rnn_layer


@contextlib.contextmanager
def onednn_lstm(on_gpu: bool) -> Iterator[None]:
    """Run ``nn.LSTM`` on meta tensors as a CPU runs it: one oneDNN kernel per layer and direction.

    On a CPU, ATen's ``lstm`` hands fp32 (and oneDNN-supported bf16) inputs to oneDNN
    (``use_mkldnn`` and ``mkldnn_rnn`` in aten/src/ATen/native/RNN.cpp and native/mkldnn/RNN.cpp):
    ``mkldnn_rnn_layer`` keeps its output and a workspace for backward, not the gates of every
    time step. On meta tensors ATen takes its generic path (cell by cell, every gate kept), a
    different memory profile. This replays ``mkldnn_rnn`` with the same ops (the transpose and
    contiguous copy of a batch-first input, the per-layer kernel, the concatenation of
    directions, dropout between layers, the stacked final states); the kernel's scratch is a
    workspace rule (archviz.estimate.workspace). Packed sequences and projections keep torch's path.
    """
    if on_gpu:
        yield
        return
    layer = mkldnn_rnn_layer()

    def make(original: Callable) -> Callable:
        def lstm(*args: Any) -> Any:
            if len(args) != 9 or not isinstance(args[1], (tuple, list)) or args[0].device.type != "meta":
                return original(*args)  # a packed sequence, or tensors a real kernel runs
            x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first = args
            directions = 2 if bidirectional else 1
            stride = 4 if has_biases else 2
            if len(params) != stride * num_layers * directions or x.dtype not in (torch.float32, torch.bfloat16) or x.dim() != 3:
                return original(*args)  # projections (proj_size), or a dtype oneDNN does not take
            hidden = hx[0].shape[-1]
            layer_input = (x.transpose(0, 1) if batch_first else x).contiguous()
            h0, c0 = hx[0].contiguous(), hx[1].contiguous()
            hy, cy = [], []
            for depth in range(num_layers):
                outputs = []
                for direction in range(directions):
                    index = depth * directions + direction
                    w = params[index * stride : index * stride + stride]
                    b_ih = w[2] if has_biases else torch.zeros(w[0].shape, dtype=w[0].dtype, device=w[0].device)
                    b_hh = w[3] if has_biases else torch.zeros(w[1].shape, dtype=w[1].dtype, device=w[1].device)
                    flags = (direction > 0, [], _LSTM, hidden, num_layers, has_biases, bidirectional, batch_first, train)
                    out, h, c, kept = layer(layer_input, w[0], w[1], b_ih, b_hh, h0[index], c0[index], *flags)
                    if kept.numel() == 0 and out.grad_fn is not None:
                        # the meta kernel returns no workspace; the CPU kernel's lives as long as the backward node
                        size = lstm_workspace_bytes(*layer_input.shape, hidden)
                        node = out.grad_fn
                        node.metadata["onednn_workspace"] = torch.empty(size, dtype=torch.uint8, device=x.device)
                        node.register_hook(functools.partial(_release_workspace, node))  # freed after the node runs, as autograd frees saved tensors
                    outputs.append(out)
                    hy.append(h)
                    cy.append(c)
                layer_input = outputs[0] if directions == 1 else torch.cat(outputs, -1)
                if dropout and train and depth < num_layers - 1:
                    layer_input = torch.nn.functional.dropout(layer_input, dropout, True)
            output = layer_input.transpose(0, 1) if batch_first else layer_input
            return output, torch.stack(hy, 0), torch.stack(cy, 0)

        return lstm

    with replaced_vf_lstm(make):
        yield


def simulated_loss(y_hat: Any, y: torch.Tensor) -> torch.Tensor:
    """The loss the simulation (and its measurement) backpropagates, for any output structure.

    The sum over every floating-point tensor in the output (a tensor, tuple, list, dict,
    namedtuple such as torchvision's ``InceptionOutputs``): cross-entropy against ``y`` for a
    [batch, classes] tensor, the tensor's plain sum for any other. An output without a
    floating-point tensor gives a constant loss: no backward pass.
    """
    total = None
    for out in tree_leaves(y_hat):
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            continue
        if out.dim() == 2 and out.shape[0] == y.shape[0]:
            term = nn.functional.cross_entropy(out, y)
        else:
            term = out.float().sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros((), device=y.device)


def floating_outputs(y_hat: Any) -> int:
    """How many floating-point tensors the output holds (the terms of ``simulated_loss``)."""
    return sum(isinstance(t, torch.Tensor) and t.is_floating_point() for t in tree_leaves(y_hat))


@dataclass
class StepRecord:
    """What the simulation of two training steps saw (the second one is reported)."""

    peak: Peak
    breakdown: dict[str, int]
    params_bytes: int
    buffers_bytes: int
    input_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    largest_temporary_bytes: int
    kept_by_module: dict[str, int] = field(default_factory=dict)
    outputs: int = 1  # floating-point tensors in the model's output, summed into the loss
    at_peak: tuple[tuple[str | None, str, str, int], ...] = ()  # (module, category, op, bytes) alive at the peak; adds up to it
    unseen: dict[str, int] = field(default_factory=dict)  # custom autograd.Function -> its margin in bytes (see custom_functions)


def _at_peak(tracker: StorageTracker) -> tuple[tuple[str | None, str, str, int], ...]:
    """What was alive at the peak, summed by (module that made it, category, op); kernel scratch is (its op's module, "scratch", op)."""
    parts: dict[tuple[str | None, str, str], int] = {}
    for s in tracker.alive_at(tracker.peak.clock):
        key = (s.module, s.category or TEMPORARIES, s.op)
        parts[key] = parts.get(key, 0) + s.nbytes
    if tracker.peak.workspace:
        parts[(tracker.peak.module, SCRATCH, tracker.peak.op)] = tracker.peak.workspace
    return tuple((*k, v) for k, v in parts.items() if v)


@contextlib.contextmanager
def _simulation(model: nn.Module, settings: StepSettings, workspace: Workspace | None, train: bool) -> Iterator[tuple[StorageTracker, str]]:
    """Put ``model`` where a simulation runs it and track its weights; yields the tracker and the device."""
    dtype, amp_dtype = settings.torch_dtypes()
    on_gpu = settings.on_gpu
    tracker = StorageTracker(rounding=512 if on_gpu else 1, count_host=not on_gpu, workspace=workspace)
    with contextlib.ExitStack() as stack:
        model.to(dtype)  # on meta: free
        if amp_dtype is not None:
            stack.enter_context(fake_mode())
            model.to_empty(device="cpu")
            device = "cpu"
        else:
            device = "meta"
            if train:
                stack.enter_context(fused_adam_on_meta())
        model.train(train)
        stack.enter_context(tracker)
        stack.enter_context(attention_backend(on_gpu))
        stack.enter_context(onednn_lstm(on_gpu))
        _track_model(model, tracker)
        yield tracker, device


InputSpec = torch.Tensor | tuple[tuple[int, ...], torch.dtype | None]
"""One model input: a tensor (its shape and dtype are used, never its data), or ``(shape, dtype)``;
``dtype=None`` means the weights' dtype."""


def _make_inputs(
    inputs: Sequence[InputSpec], dtype: torch.dtype, device: str, tracker: StorageTracker, labels: bool = True
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Empty tensors for the model's inputs and (``labels``) ``y``, one class index per sample; all tracked."""
    if not inputs:
        raise ValueError("a simulation needs at least one input")
    made = []
    for spec in inputs:
        shape, kind = (tuple(spec.shape), spec.dtype) if isinstance(spec, torch.Tensor) else (tuple(spec[0]), spec[1])
        X = torch.empty(shape, dtype=kind or dtype, device=device)
        tracker.track(X, INPUT)
        made.append(X)
    if not labels:
        return made, None
    batch = made[0].shape[0] if made[0].dim() else 1
    y = torch.zeros(batch, dtype=torch.long, device=device)
    tracker.track(y, INPUT)
    return made, y


class BatchNormAtBatchOne(RunError):
    """Batch norm in train mode met one value per channel (a batch of 1); ``layer`` names it."""

    def __init__(self, message: str, layer: str | None) -> None:
        super().__init__(message)
        self.layer = layer


def is_size_overflow(exc: BaseException) -> bool:
    """torch's own error for a tensor whose size does not fit in int64."""
    return isinstance(exc, RuntimeError) and "overflow" in str(exc).lower()


def size_overflow_sentence(exc: BaseException, where: str = "a layer") -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{where} would make a tensor of more than 2^63 bytes, which torch cannot even size ({first}); use a smaller batch, input or layer."


@contextlib.contextmanager
def torch_size_overflow() -> Iterator[None]:
    """Any torch size overflow left (one not met inside a simulated layer) as one sentence."""
    try:
        yield
    except RuntimeError as exc:
        if not is_size_overflow(exc):
            raise
        raise TooLarge(size_overflow_sentence(exc)) from None


@contextlib.contextmanager
def _named_failures(tracker: StorageTracker) -> Iterator[None]:
    """Turn the errors a real run would also hit into one sentence that names the layer."""
    try:
        yield
    except RuntimeError as exc:
        if not is_size_overflow(exc):
            raise
        raise TooLarge(size_overflow_sentence(exc, f"layer '{tracker.modules[-1]}'" if tracker.modules else "a layer")) from None
    except ValueError as exc:
        if "Expected more than 1 value per channel when training" not in str(exc):
            raise
        layer = tracker.modules[-1] if tracker.modules else None
        where = f"layer '{layer}'" if layer else "a batch-norm layer"
        raise BatchNormAtBatchOne(
            f"{where} normalises a single value per channel in train mode, which batch norm cannot do; use a batch of 2 or more, or --mode eval.",
            layer,
        ) from None


def simulate_training(
    model: nn.Module,
    inputs: Sequence[InputSpec],
    settings: StepSettings,
    workspace: Workspace | None = None,
) -> StepRecord:
    """Two training steps (archviz.step.train_step) of ``model`` (on the meta device; it is changed) on ``inputs``.

    Without autocast everything runs on meta tensors; autocast needs a real backend, so
    with ``amp_dtype`` the model becomes CPU FakeTensors (shapes only, CPU dispatch). The
    loss is :func:`simulated_loss`; a model without trainable parameters has no optimizer
    and no backward pass.
    """
    dtype, amp_dtype = settings.torch_dtypes()
    on_gpu = settings.on_gpu
    with _simulation(model, settings, workspace, train=True) as (tracker, device):
        X, y = _make_inputs(inputs, dtype, device, tracker)
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = make_optimizer(settings.optimizer, trainable, weight_decay=settings.weight_decay, on_gpu=on_gpu) if trainable else None
        autocast = (lambda: torch.autocast("cpu", dtype=amp_dtype)) if amp_dtype is not None else contextlib.nullcontext
        unseen: dict[str, int] = {}

        def loss(y_hat: Any, target: torch.Tensor) -> torch.Tensor:
            value = simulated_loss(y_hat, target)
            custom_functions(value, unseen)
            return value

        with module_scope(model, tracker), _named_failures(tracker):
            state = train_step(model, loss, opt, X, y, autocast, tracker.in_phase)
            outputs = floating_outputs(state[1])
            _label_after_step(model, opt, tracker, host_steps=on_gpu)
            tracker.start_window()
            window = tracker.clock
            forward_end = [0]

            def phase(name: str) -> contextlib.AbstractContextManager:
                if name == "backward":
                    forward_end[0] = tracker.clock
                return tracker.in_phase(name)

            state = train_step(model, loss, opt, X, y, autocast, phase)
            _label_after_step(model, opt, tracker, host_steps=on_gpu)
            del state
        record = _record(tracker, window, forward_end[0] or tracker.clock)
        record.outputs = outputs
        record.unseen = unseen
        return record


def custom_functions(loss: torch.Tensor, found: dict[str, int]) -> None:
    """Name every custom ``torch.autograd.Function`` in ``loss``'s graph, with a margin for what the simulation cannot see.

    Its forward and backward run on meta tensors like any Python code, so the torch operators
    they call are counted; what they do outside torch's operators (NumPy, a C extension, work
    that depends on the values) is not. The margin is the largest set of tensors one call saves
    for backward: room for one more copy of them, the size of the temporaries such code makes.
    """
    seen: set[int] = set()
    stack = [loss.grad_fn] if loss.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        forward = getattr(node, "_forward_cls", None)
        if forward is not None:
            saved = sum(t.untyped_storage().nbytes() for t in getattr(node, "saved_tensors", ()) if isinstance(t, torch.Tensor))
            name = getattr(forward, "__qualname__", type(node).__name__)
            found[name] = max(found.get(name, 0), saved)
        stack.extend(next_node for next_node, _ in node.next_functions)


def _track_model(model: nn.Module, tracker: StorageTracker) -> None:
    """Track the weights, each charged to the module that holds it (the first, for a shared one)."""
    for path, module in model.named_modules():
        for p in module.parameters(recurse=False):
            tracker.track(p, PARAMS, module=path)
        for b in module.buffers(recurse=False):
            tracker.track(b, BUFFERS, module=path)


def _label_after_step(model: nn.Module, opt: torch.optim.Optimizer | None, tracker: StorageTracker, host_steps: bool) -> None:
    # a parameter's gradient and optimizer state belong to the module that holds the parameter
    for p in model.parameters():
        if p.grad is not None:
            record = tracker.track(p.grad, GRADS)
            if record is not None:
                record.module = tracker.module_of(p)
    if opt is None:
        return
    for param, state in opt.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                record = tracker.track(value, OPTIMIZER)
                if record is not None:
                    record.module = tracker.module_of(param)
                # torch keeps the non-fused optimizers' step counters on the host (a CPU
                # scalar per parameter): on a GPU they are not device memory.
                if host_steps and key == "step" and record is not None and record.died is None and not _fused(opt):
                    tracker.live -= record.nbytes
                    record.nbytes = 0


def _fused(opt: torch.optim.Optimizer) -> bool:
    return any(group.get("fused") for group in opt.param_groups)


def _record(tracker: StorageTracker, window: int, forward_end: int) -> StepRecord:
    step = [s for s in tracker.storages if s.born > window]
    for s in step:
        if not s.category:
            kept = s.phase == "forward" and s.alive_at(forward_end)
            s.category = ACTIVATIONS if kept else TEMPORARIES
    breakdown: dict[str, int] = {}
    for s in tracker.alive_at(tracker.peak.clock):
        breakdown[s.category or TEMPORARIES] = breakdown.get(s.category or TEMPORARIES, 0) + s.nbytes
    if tracker.peak.workspace:
        breakdown[TEMPORARIES] = breakdown.get(TEMPORARIES, 0) + tracker.peak.workspace

    def total(category: str, storages: list[Storage]) -> int:
        return sum(s.nbytes for s in storages if s.category == category)

    alive_now = tracker.alive_at(tracker.clock)
    kept_by_module: dict[str, int] = {}
    for s in step:
        if s.category == ACTIVATIONS:
            kept_by_module[s.module or ""] = kept_by_module.get(s.module or "", 0) + s.nbytes
    grads_end = [s for s in step if s.category == GRADS]
    temporaries = [s.nbytes for s in step if s.category == TEMPORARIES]
    return StepRecord(
        peak=tracker.peak,
        breakdown=breakdown,
        params_bytes=total(PARAMS, alive_now),
        buffers_bytes=total(BUFFERS, alive_now),
        input_bytes=total(INPUT, alive_now),
        grads_bytes=sum(s.nbytes for s in grads_end),
        optimizer_bytes=total(OPTIMIZER, alive_now),
        activations_bytes=sum(kept_by_module.values()),
        largest_temporary_bytes=max([*temporaries, tracker.largest_workspace, 0]),
        kept_by_module=kept_by_module,
        at_peak=_at_peak(tracker),
    )


def simulate_inference(
    model: nn.Module,
    inputs: Sequence[InputSpec],
    settings: StepSettings,
    workspace: Workspace | None = None,
) -> StepRecord:
    """One eval-mode forward pass under ``torch.no_grad()`` (weights and input included in the peak)."""
    dtype, amp_dtype = settings.torch_dtypes()
    with _simulation(model, settings, workspace, train=False) as (tracker, device):
        X, _ = _make_inputs(inputs, dtype, device, tracker, labels=False)
        tracker.start_window()
        window = tracker.clock
        autocast = torch.autocast("cpu", dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
        with torch.no_grad(), autocast, tracker.in_phase("forward"), module_scope(model, tracker), _named_failures(tracker):
            y_hat = model(*X)
        del y_hat
    for s in tracker.storages:
        if s.born > window and not s.category:
            s.category = ACTIVATIONS
    alive_at_peak = tracker.alive_at(tracker.peak.clock)
    breakdown: dict[str, int] = {}
    for s in alive_at_peak:
        breakdown[s.category] = breakdown.get(s.category, 0) + s.nbytes
    if tracker.peak.workspace:
        breakdown[TEMPORARIES] = breakdown.get(TEMPORARIES, 0) + tracker.peak.workspace
    everything = tracker.storages
    return StepRecord(
        peak=tracker.peak,
        breakdown=breakdown,
        params_bytes=sum(s.nbytes for s in everything if s.category == PARAMS),
        buffers_bytes=sum(s.nbytes for s in everything if s.category == BUFFERS),
        input_bytes=sum(s.nbytes for s in everything if s.category == INPUT),
        grads_bytes=0,
        optimizer_bytes=0,
        activations_bytes=0,
        largest_temporary_bytes=max([tracker.largest_workspace, *(s.nbytes for s in everything if s.born > window)], default=0),
        at_peak=_at_peak(tracker),
    )
