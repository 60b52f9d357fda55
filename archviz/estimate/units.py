"""Byte sizes as people write them: ``80GiB``, ``512MB``, ``1.5 TiB``, ``4096``."""

from __future__ import annotations

import re

from archviz.errors import UsageError

# IEC units are powers of 1024 (GPU memory is sold in GiB even when labelled "GB");
# SI units are powers of 1000. A bare number is bytes.
_UNITS = {
    "": 1,
    "b": 1,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str, option: str = "--budget") -> int:
    """``'80GiB'`` -> 85899345920 bytes; KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of 1000."""
    match = _SIZE.match(text or "")
    example = "write it like 80GiB (2^30 bytes each), 512MB (10^6 bytes each) or a number of bytes"
    if not match:
        raise UsageError(f"{option} {text!r} is not a size; {example}.")
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit in ("k", "m", "g", "t"):
        raise UsageError(
            f"{option} {text!r} is ambiguous; write {match.group(1)}{unit.upper()}iB (powers of 1024) or {match.group(1)}{unit.upper()}B (powers of 1000)."
        )
    if unit not in _UNITS:
        raise UsageError(f"{option} {text!r} has an unknown unit {match.group(2)!r}; {example}.")
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise UsageError(f"{option} {text!r} must be more than zero bytes.")
    return size


def format_bytes(n: int | float | None) -> str:
    """Bytes in binary units (KiB, MiB, GiB = powers of 1024), three significant digits."""
    if n is None:
        return "-"
    n = float(n)
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            value = n / scale
            digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
            return f"{value:.{digits}f} {unit}"
    return f"{int(n)} B"
