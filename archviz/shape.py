"""Input-shape strings such as ``1x1x96x96`` (batch x channels x height x width)."""

from __future__ import annotations

from archviz.errors import UsageError

Shape = tuple[int, ...]


def parse_shape(text: str) -> Shape:
    """Parse ``NxCxHxW`` into a tuple of four positive ints, or raise UsageError."""
    raw = (text or "").strip().lower()
    parts = raw.split("x") if raw else []
    example = "write it as NxCxHxW, e.g. 1x1x96x96"
    if len(parts) != 4:
        raise UsageError(f"--input {text!r} has {len(parts)} dimension(s); {example}.")
    dims = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise UsageError(f"--input {text!r}: {part!r} is not a whole number; {example}.") from None
        if value <= 0:
            raise UsageError(f"--input {text!r}: every size must be at least 1, got {value}; {example}.")
        dims.append(value)
    return tuple(dims)


def format_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)
