"""Memory per block that adds up to the peak, and every figure grouped by layer kind.

The simulation (:mod:`archviz.estimate.simulate`) charges each storage to the module that made
it: the module whose forward was running (MemTracker's rule), in backward the module whose
backward was running, a gradient or optimizer state to the module that holds the parameter.
At the peak moment every byte alive is therefore one of: a block's weights, gradients,
optimizer state, activations (in training: kept for backward) or temporaries (a kernel's
scratch memory inside one op included, charged to the op's module), or the *remainder*:
the input batch and labels, scratch of an op outside every module, tensors
made outside every module (the loss and its gradient), and tensors a container made itself
between its blocks (an add or concat in its own forward). Blocks plus remainder equal the
peak exactly. Plain data in, dataclasses out (``to_dict()``: their JSON); rendering is archviz.render.cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from archviz.estimate.simulate import ACTIVATIONS, BUFFERS, GRADS, INPUT, OPTIMIZER, PARAMS, SCRATCH
from archviz.spec import ops as O

if TYPE_CHECKING:
    from archviz.trace.record import Node, Trace

Part = tuple[str | None, str, str, int]  # (module that made it, category, aten op, bytes): MemoryEstimate.peak_parts

# The kinds `cost --by kind` groups by: the op table's diagram kinds, with the ones that hold
# no parameters and no MACs of their own (dropout, reshape) and "block" folded into "other".
FOLDED = {"dropout": "other", "reshape": "other", "block": "other"}
KINDS = tuple(k for k in O.KINDS if k not in FOLDED)

# Category of a storage -> column of the per-block memory.
COLUMNS = {PARAMS: "weights_bytes", BUFFERS: "weights_bytes", GRADS: "grads_bytes", OPTIMIZER: "optimizer_bytes", ACTIVATIONS: "activations_bytes"}
MEMORY_KEYS = ("weights_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "temporaries_bytes")
REMAINDER_TEXT = {
    "input_bytes": "input batch and labels",
    "kernel_scratch_bytes": "kernel scratch of an op outside every module",
    "outside_modules_bytes": "made outside every module (the loss and its gradient)",
    "between_blocks_bytes": "made by a container between its blocks (its own add/concat) or held by the model itself",
}


def percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


@dataclass
class Memory:
    """The bytes alive at the peak one block (or layer kind) made, by what they are (MEMORY_KEYS), and its share of the peak."""

    weights_bytes: int = 0
    grads_bytes: int = 0
    optimizer_bytes: int = 0
    activations_bytes: int = 0
    temporaries_bytes: int = 0
    peak_share_bytes: int = 0
    peak_percent: float = 0.0

    to_dict = asdict  # the JSON keys are the field names

    def add(self, category: str, nbytes: int) -> None:
        column = COLUMNS.get(category, "temporaries_bytes")
        setattr(self, column, getattr(self, column) + nbytes)
        self.peak_share_bytes += nbytes


@dataclass(frozen=True)
class Remainder:
    """The bytes at the peak no block made, by where they come from (REMAINDER_TEXT); blocks + remainder = the peak."""

    input_bytes: int = 0
    kernel_scratch_bytes: int = 0
    outside_modules_bytes: int = 0
    between_blocks_bytes: int = 0
    bytes: int = 0  # their sum
    percent: float = 0.0  # of the peak

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": dict(REMAINDER_TEXT)}


@dataclass(frozen=True)
class KindCost:
    """One layer kind's row of `cost --by kind`: params, MACs and the memory at the peak of every layer of that kind."""

    kind: str
    params: int
    params_percent: float
    macs: int
    macs_percent: float
    memory: Memory
    eval_memory: Memory | None = None  # at the eval forward's peak (mode both)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k != "eval_memory"}


def _remainder_key(module: str | None, category: str) -> str | None:
    if category == INPUT:
        return "input_bytes"
    if category == SCRATCH and module is None:
        return "kernel_scratch_bytes"
    if module is None:
        return "outside_modules_bytes"
    return None


def _finish(groups: Iterable[Memory], counts: dict[str, int], peak: int) -> Remainder:
    for memory in groups:
        memory.peak_percent = percent(memory.peak_share_bytes, peak)
    total = sum(counts.values())
    return Remainder(**counts, bytes=total, percent=percent(total, peak))


def memory_by_block(parts: Iterable[Part], blocks: list[Node], peak: int) -> tuple[dict[str, Memory], Remainder]:
    """Per block path, the bytes alive at the peak by column; and the remainder (see the module docstring)."""
    by_path = {b.path: Memory() for b in blocks}
    remainder = dict.fromkeys(REMAINDER_TEXT, 0)  # bytes by remainder field
    for module, category, _op, nbytes in parts:
        key = _remainder_key(module, category)
        block = None if key else _enclosing(module or "", by_path)
        if block is None:
            remainder[key or "between_blocks_bytes"] += nbytes
        else:
            by_path[block].add(category, nbytes)
    return by_path, _finish(by_path.values(), remainder, peak)


def _enclosing(path: str, blocks: dict[str, Any]) -> str | None:
    while path:
        if path in blocks:
            return path
        path = path.rpartition(".")[0]
    return None


def _function_kind(op: str) -> str:
    """The kind of an aten op that ran outside any leaf module (``add`` -> merge, ``relu_`` -> activation)."""
    for name in (op, op.rstrip("_"), op.lstrip("_"), op.removesuffix("_with_indices")):
        kind = O.layer_kind("function", name)
        if kind != "other":
            return FOLDED.get(kind, kind)
    return "other"


def leaf_kinds(trace: Trace) -> dict[str, str]:
    """Kind of every leaf module, by path."""
    return {n.path: FOLDED.get(k, k) for n in trace.nodes if n.is_leaf and n.depth > 0 for k in [O.layer_kind("module", n.type)]}


def by_kind(trace: Trace, parts: Iterable[Part], peak: int) -> tuple[list[KindCost], Remainder]:
    """Params, MACs and the memory at the peak per layer kind; each column sums to the whole model's (memory: with the remainder)."""
    leaves = leaf_kinds(trace)
    params = dict.fromkeys(KINDS, 0)
    flops = dict.fromkeys(KINDS, 0)
    for n in trace.nodes:
        if n.path in leaves:
            params[leaves[n.path]] += n.params
            flops[leaves[n.path]] += n.flops
    for op in trace.ops:
        if op.kind == "function" and op.flops:
            kind = O.layer_kind("function", op.type)
            flops[FOLDED.get(kind, kind)] += op.flops
    params["other"] += trace.total_params - sum(params.values())  # parameters a container holds itself (a class token)
    flops["other"] += trace.flops - sum(flops.values())
    memory = {k: Memory() for k in KINDS}
    remainder = dict.fromkeys(REMAINDER_TEXT, 0)
    for module, category, op, nbytes in parts:
        key = _remainder_key(module, category)
        if key:
            remainder[key] += nbytes
            continue
        kind = leaves.get(module or "") or ("other" if category in (PARAMS, BUFFERS, GRADS, OPTIMIZER) else _function_kind(op))
        memory[kind].add(category, nbytes)
    macs = {k: flops[k] // 2 for k in KINDS}
    rows = [KindCost(k, params[k], percent(params[k], trace.total_params), macs[k], percent(macs[k], trace.flops // 2), memory[k]) for k in KINDS]
    return rows, _finish(memory.values(), remainder, peak)
