"""Every private torch, torchvision and typer API archviz touches, in one place.

These names are not public: a release may move or remove them without notice. Going through
this module means an upgrade breaks one file, loudly (tests/test_compat.py has a smoke test
for each entry), instead of five files silently. Torch entries load lazily (module
``__getattr__``), so ``archviz --help`` does not import torch.

When an entry is missing, the error names it and the versions it is known to work with.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import typer

from archviz.errors import RunError

TESTED = "torch 2.11-2.14, torchvision 0.26-0.29, typer 0.12-0.29"

# -- typer ------------------------------------------------------------------------------
# typer >= 0.2x vendors click as ``typer._click`` (reached through ``typer.core._click``);
# older releases use the click package. typer 0.29 moved Abort and Exit out of the
# vendored click into ``typer.exceptions`` (public as typer.Abort / typer.Exit), so those
# two come from typer itself, which re-exports click's in older releases.
try:
    import typer.core as _typer_core

    _click = getattr(_typer_core, "_click", None) or importlib.import_module("click")
except ImportError as exc:  # pragma: no cover - only on a typer without either
    raise ImportError(f"archviz cannot find typer's click ({exc}); it is tested with {TESTED}.") from None

click_exceptions = _click.exceptions
UsageError = click_exceptions.UsageError
ClickException = click_exceptions.ClickException
Abort = typer.Abort
Exit = typer.Exit


class _NeverRaised(Exception):
    """Stands in for an exception class an older click does not have."""


# click >= 8.2 raises this for a bare command with no_args_is_help; older ones print the help and exit 0.
NoArgsIsHelpError = getattr(click_exceptions, "NoArgsIsHelpError", _NeverRaised)


# -- torch and torchvision ----------------------------------------------------------------
def _missing(what: str, exc: BaseException) -> RunError:
    import torch

    return RunError(f"this torch ({torch.__version__}) has no {what} ({exc}); archviz is tested with {TESTED}.")


_LAZY: dict[str, tuple[str, str]] = {
    # name here: (module, attribute)
    "TorchDispatchMode": ("torch.utils._python_dispatch", "TorchDispatchMode"),
    "tree_leaves": ("torch.utils._pytree", "tree_leaves"),
    "FakeTensor": ("torch._subclasses.fake_tensor", "FakeTensor"),
    "FakeTensorMode": ("torch._subclasses.fake_tensor", "FakeTensorMode"),
    "WeakIdKeyDictionary": ("torch.utils.weak", "WeakIdKeyDictionary"),
    "read_image_file": ("torchvision.datasets.mnist", "read_image_file"),
    "read_label_file": ("torchvision.datasets.mnist", "read_label_file"),
}


def __getattr__(name: str) -> Any:
    if name in globals():
        return globals()[name]
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _LAZY[name]
    try:
        value = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise _missing(f"{module}.{attr}", exc) from None
    globals()[name] = value  # resolved once
    return value


def fake_mode() -> Any:
    """A FakeTensorMode that also accepts real tensors (a model's real CPU weights)."""
    return __getattr__("FakeTensorMode")(allow_non_fake_inputs=True)


def is_fake(t: Any) -> bool:
    """Whether ``t`` is a fake tensor (shape and dtype only, no storage)."""
    return isinstance(t, __getattr__("FakeTensor"))


def tensor_version(t: Any) -> int:
    """How many times ``t`` (or a view sharing its data) was changed in place (``Tensor._version``)."""
    try:
        return t._version
    except AttributeError as exc:
        raise _missing("torch.Tensor._version", exc) from None


@contextlib.contextmanager
def fused_adam_on_meta() -> Iterator[None]:
    """Let fused Adam/AdamW run on meta tensors: torch checks the device, the meta kernel exists.

    Patches ``torch.optim.adam._device_dtype_check_for_fused`` (torch >= 2.4) for the
    duration; AdamW shares it.
    """
    import torch.optim.adam as adam_module

    try:
        original = adam_module._device_dtype_check_for_fused
    except AttributeError as exc:
        raise _missing("torch.optim.adam._device_dtype_check_for_fused", exc) from None
    adam_module._device_dtype_check_for_fused = lambda p, cuda_unsupported=False: None
    try:
        yield
    finally:
        adam_module._device_dtype_check_for_fused = original


@contextlib.contextmanager
def replaced_sdpa(make: Callable[[Callable], Callable]) -> Iterator[None]:
    """Swap ``torch.nn.functional.scaled_dot_product_attention`` for ``make(original)``, process-wide.

    That is where nn.MultiheadAttention and most models look it up. The swap is visible to
    every thread while it lasts: use it only around a simulation archviz itself runs.
    """
    from torch.nn import functional

    original = functional.scaled_dot_product_attention
    functional.scaled_dot_product_attention = make(original)
    try:
        yield
    finally:
        functional.scaled_dot_product_attention = original


def sdpa_kernels() -> tuple[Callable, Callable, Callable]:
    """The fused attention kernels torch's sdpa dispatches to: (flash on CPU, flash on CUDA, memory-efficient).

    Private aten ops; each returns a tuple whose first item is the attention output.
    """
    import torch

    aten = torch.ops.aten
    try:
        return aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_flash_attention, aten._scaled_dot_product_efficient_attention
    except (AttributeError, RuntimeError) as exc:
        raise _missing("fused attention kernels in torch.ops.aten", exc) from None


class _TotalsOnly:
    """Stands in for FlopCounterMode's ModuleTracker: every FLOP goes to 'Global', no hooks."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _TotalsOnly:
        return self

    def __exit__(self, *args: Any) -> None:
        return None


def forward_flop_counter() -> Any:
    """A ``FlopCounterMode`` that counts totals only (``get_total_flops``), for a forward under ``no_grad``.

    FlopCounterMode attributes FLOPs to modules through ``torch.utils.module_tracker``, whose
    forward hooks register backward hooks on every input that requires grad; under
    ``no_grad`` a view of a parameter (timm CaiT's class token) requires grad but has no
    grad_fn, and that registration fails (``AssertionError: Expected gradient function to
    be set``). archviz reads totals before and after each module itself, so the per-module
    tracker (the ``mod_tracker`` attribute, not public) is replaced by one that does nothing.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    if not hasattr(counter, "mod_tracker") or not hasattr(counter, "_count_flops"):
        raise _missing("FlopCounterMode.mod_tracker and _count_flops", AttributeError("mod_tracker"))
    counter.mod_tracker = _TotalsOnly()
    # Every aten op the counter sees (after decomposition), counted or not, in order: which
    # ops did arithmetic that no FLOP formula covers (``cdist``, an FFT) is read from it.
    counter.archviz_seen = seen = []
    count = counter._count_flops

    def _count_flops(func_packet: Any, out: Any, args: Any, kwargs: Any) -> Any:
        seen.append(func_packet)
        return count(func_packet, out, args, kwargs)

    counter._count_flops = _count_flops
    return counter


def has_flop_formula(counter: Any, func_packet: Any) -> bool:
    """Whether ``counter`` (a FlopCounterMode) counts the aten op ``func_packet``."""
    return func_packet in counter.flop_registry


def profiler_event_tree(prof: Any) -> list:
    """The root events of a finished ``torch.profiler.profile``, with allocation events (kineto's private tree)."""
    try:
        return prof.profiler.kineto_results.experimental_event_tree()
    except AttributeError as exc:
        raise _missing("profiler event tree with allocation events (kineto_results.experimental_event_tree)", exc) from None


def cpu_isa_flags() -> dict[str, bool]:
    """What the CPU itself supports (cpuinfo, not capped by ATEN_CPU_CAPABILITY): avx2, avx512, avx512_bf16, amx_tile, amx_fp16."""
    import torch.cpu

    try:
        return {
            "avx2": bool(torch.cpu._is_avx2_supported()),
            "avx512": bool(torch.cpu._is_avx512_supported()),
            "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
            "amx_tile": bool(torch.cpu._is_amx_tile_supported()),
            "amx_fp16": bool(torch.cpu._is_amx_fp16_supported()),
        }
    except AttributeError as exc:
        raise _missing("CPU feature queries (torch.cpu._is_avx2_supported and friends)", exc) from None


def mkldnn_bf16_supported() -> bool:
    """Whether ATen hands bf16 convolutions and matmuls to oneDNN (its own ``mkldnn_bf16_device_check``)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError) as exc:
        raise _missing("torch.ops.mkldnn._is_mkldnn_bf16_supported", exc) from None


@contextlib.contextmanager
def replaced_vf_lstm(make: Callable[[Callable], Callable]) -> Iterator[None]:
    """Swap ``torch._VF.lstm`` (what ``nn.LSTM.forward`` calls) for ``make(original)``, process-wide, while it lasts.

    ``torch._VF`` is torch's private module of the C++ ``_VariableFunctions``; nn.LSTM looks ``lstm`` up on it at each call.
    """
    from torch import _VF

    try:
        original = _VF.lstm
    except AttributeError as exc:
        raise _missing("torch._VF.lstm", exc) from None
    _VF.lstm = make(original)
    try:
        yield
    finally:
        del _VF.lstm  # back to the module's own lookup of torch._C._VariableFunctions.lstm


def mkldnn_rnn_layer() -> Callable:
    """ATen's oneDNN LSTM layer (``torch.ops.aten.mkldnn_rnn_layer``, the kernel a CPU runs for nn.LSTM), with its meta kernel."""
    import torch

    try:
        return torch.ops.aten.mkldnn_rnn_layer
    except (AttributeError, RuntimeError) as exc:
        raise _missing("torch.ops.aten.mkldnn_rnn_layer", exc) from None
