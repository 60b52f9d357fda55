"""`archviz cost --sweep`: peak memory (train and eval), MACs and params over batch sizes and input sizes.

One trace per input size: the batch size changes neither whether a network runs nor its
per-sample MACs, so every batch of one input size reads that trace (and the memory
simulation reuses one meta model per input size, archviz.estimate.memory._meta_model). A point
that cannot run or does not fit the budget is a row that says why; the sweep goes on.
A :class:`SweepReport` of :class:`SweepRow` (``to_dict()``: the JSON); rendering is archviz.render.cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from archviz.choices import Mode
from archviz.errors import RunError, UsageError
from archviz.estimate.memory import largest_batch, predict_memory
from archviz.estimate.settings import StepSettings
from archviz.estimate.units import format_bytes

if TYPE_CHECKING:
    from archviz.arch import Arch
    from archviz.trace.record import Shape

MAX_POINTS = 64
Side = tuple[int, ...]  # the spatial size of one input-size point: (56,) means 56 on every spatial axis


def _numbers(key: str, text: str, example: str) -> list[str]:
    values = [v.strip() for v in text.split(",")]
    if not text.strip() or any(not v for v in values):
        raise UsageError(f"--sweep {key}= needs a comma-separated list such as {key}={example}, not {key}={text!r}.")
    return values


def _positive(key: str, value: str, example: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"--sweep {key}= takes whole numbers of 1 or more such as {key}={example}; {value!r} is not one.")
    return int(value)


def parse_sweeps(texts: list[str]) -> tuple[list[int] | None, list[Side] | None]:
    """``["batch=1,8", "input=56,84x84"]`` -> ([1, 8], [(56,), (84, 84)]); UsageError in one sentence otherwise."""
    batches: list[int] | None = None
    sides: list[Side] | None = None
    for text in texts:
        key, sep, values = text.partition("=")
        key = key.strip()
        if not sep or key not in ("batch", "input"):
            raise UsageError(f"unknown sweep {text!r}; use --sweep batch=1,8,32,128 or --sweep input=56,84,224 (a side, or HxW), or both.")
        if (batches if key == "batch" else sides) is not None:
            raise UsageError(f"--sweep {key}= is given twice; list every value in one, e.g. --sweep {key}={'1,8,32' if key == 'batch' else '56,84,224'}.")
        if key == "batch":
            batches = [_positive("batch", v, "1,8,32") for v in _numbers("batch", values, "1,8,32")]
        else:
            sides = [tuple(_positive("input", d, "56,84x84") for d in v.lower().split("x")) for v in _numbers("input", values, "56,84,224")]
    points = len(batches or [None]) * len(sides or [None])
    if points > MAX_POINTS:
        raise UsageError(f"the sweep has {points} points, more than the {MAX_POINTS} archviz runs at once; give fewer batch sizes or input sizes.")
    return batches, sides


def _with_side(shape: Shape, side: Side | None) -> Shape:
    if side is None:
        return tuple(shape)
    spatial = len(shape) - 2
    if spatial < 1:
        raise UsageError(f"--sweep input= sets the spatial size of a batch x channels x ... input; this network's input {'x'.join(map(str, shape))} has none.")
    if len(side) == 1:
        side = side * spatial
    if len(side) != spatial:
        raise UsageError(
            f"--sweep input= got {'x'.join(map(str, side))} for an input with {spatial} spatial axes; give one side or {spatial} sides joined by x."
        )
    return (*shape[:2], *side)


@dataclass
class SweepRow:
    """One (input size, batch) point; None where it cannot run, and the note says why. The field names are its JSON keys."""

    batch: int
    input_shape: list[int]
    params: int | None = None
    macs: int | None = None
    train_peak_bytes: int | None = None
    eval_peak_bytes: int | None = None
    largest_batch: int | None = None  # within the budget, at this input size (0: not even one)
    fits: bool | None = None  # the training step within the budget
    note: str = ""


@dataclass(frozen=True)
class SweepReport:
    """What `archviz cost --sweep` reports: the step's settings, what was swept and one row per point."""

    arch: str
    input_shape: list[int]
    optimizer: str
    dtype: str
    amp: bool
    device: str
    budget_bytes: int | None
    swept: list[str]
    rows: list[SweepRow]

    to_dict = asdict  # the JSON keys are the field names


def sweep_report(
    arch: Arch,
    input_shape: Shape | None = None,
    settings: StepSettings = StepSettings(),
    *,
    batches: list[int] | None = None,
    sides: list[Side] | None = None,
    budget_bytes: int | None = None,
) -> SweepReport:
    """One row per (input size, batch) point: params, MACs, train and eval peak, largest batch within ``budget_bytes`` (``settings.mode`` is not read).

    ``batches`` and ``sides`` come from :func:`parse_sweeps`, which bounds their points (MAX_POINTS)."""
    settings = settings.with_mode(Mode.train)
    base = tuple(input_shape or arch.default_input)
    rows = []
    for side in sides or [None]:
        shape = _with_side(base, side)
        rows += _rows_for_size(arch, shape, batches or [shape[0]], settings, budget_bytes)
    swept = [k for k, v in (("batch", batches), ("input", sides)) if v]
    return SweepReport(arch.name, list(base), str(settings.optimizer), str(settings.dtype), settings.amp, str(settings.device), budget_bytes, swept, rows)


def _rows_for_size(arch: Arch, shape: Shape, batches: list[int], settings: StepSettings, budget_bytes: int | None) -> list[SweepRow]:
    traced_at = min(batches)
    rows = [SweepRow(b, [b, *shape[1:]]) for b in batches]
    try:
        trace = arch.trace((traced_at, *shape[1:]))
    except (RunError, UsageError) as exc:  # this input size cannot run: every batch of it says why
        for row in rows:
            row.note = str(exc)
        return rows
    fits: tuple[int, Any] | None | str = None
    if budget_bytes is not None:
        try:
            fits = largest_batch(arch, None, budget_bytes, settings, trace=trace)
        except (RunError, UsageError) as exc:
            fits = str(exc)
    for row, batch in zip(rows, batches, strict=True):
        row.params = trace.total_params
        # MACs grow linearly with the batch; a network where they do not is traced at this batch
        flops = trace.flops * batch // traced_at if trace.flops % traced_at == 0 else arch.trace(tuple(row.input_shape)).flops
        row.macs = flops // 2
        _memory(arch, row, trace, settings)
        if budget_bytes is not None:
            _budget(row, fits, budget_bytes)
    return rows


def _memory(arch: Arch, row: SweepRow, trace: Any, settings: StepSettings) -> None:
    try:
        memory = predict_memory(arch, settings=settings, trace=trace, batch=row.batch)
        row.train_peak_bytes, row.eval_peak_bytes = memory.peak_bytes, memory.inference_peak_bytes
    except RunError as exc:  # batch norm at batch 1, a tensor too large for torch: eval may still run
        row.note = str(exc)
        try:
            row.eval_peak_bytes = predict_memory(arch, settings=settings.with_mode(Mode.eval), trace=trace, batch=row.batch).peak_bytes
        except RunError:
            pass


def _budget(row: SweepRow, fits: Any, budget_bytes: int) -> None:
    if isinstance(fits, str):
        row.note = row.note or fits
        return
    row.largest_batch = fits[0] if fits else 0
    if row.train_peak_bytes is not None:
        row.fits = row.train_peak_bytes <= budget_bytes
        if not row.fits:
            row.note = row.note or f"over budget: training needs {format_bytes(row.train_peak_bytes)}"
