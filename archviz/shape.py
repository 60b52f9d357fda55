"""Input strings such as ``1x1x96x96`` or ``2x32:int64``: a shape of any rank and an optional dtype.

No torch here: dtypes are kept as torch's own names (``float32``, ``int64``, ...) so that
built-ins and spec files never import torch; ``InputSpec.torch_dtype`` converts when needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from archviz.errors import UsageError

Shape = tuple[int, ...]

# An input may hold at most 2^53 elements. Nothing is allocated on the meta device, but
# torch computes sizes in int64: 1x1x4e9x4e9 (1.6e19 elements) would overflow inside C++
# and end in a stack of C++ frames instead of one sentence. 2^53 leaves room for the
# largest batch `cost --budget` searches (2^40) times an image's elements.
MAX_ELEMENTS = 2**53
MAX_RANK = 8

# Accepted spellings -> torch's name. Float types first: they are what `--input` means by default.
DTYPES: dict[str, str] = {
    "float32": "float32",
    "fp32": "float32",
    "f32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "f16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float64": "float64",
    "fp64": "float64",
    "f64": "float64",
    "double": "float64",
    "int64": "int64",
    "i64": "int64",
    "long": "int64",
    "int32": "int32",
    "i32": "int32",
    "int": "int32",
    "int16": "int16",
    "i16": "int16",
    "int8": "int8",
    "i8": "int8",
    "uint8": "uint8",
    "u8": "uint8",
    "bool": "bool",
}
FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1}
GRAMMAR = "write it as SHAPE[:DTYPE], sizes joined by 'x', e.g. 1x3x224x224, 4x1x16000 or 2x32:int64"


@dataclass(frozen=True)
class InputSpec:
    """One input of a network: its shape (any rank) and dtype (torch's name, float32 unless said)."""

    shape: Shape
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.dtype not in _ITEMSIZE:
            raise UsageError(f"unknown input dtype {self.dtype!r}; use one of {', '.join(sorted(set(DTYPES.values())))}.")
        check_size(self.shape, str(self))

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * _ITEMSIZE[self.dtype]

    @property
    def torch_dtype(self):  # -> torch.dtype; imports torch
        import torch

        return getattr(torch, self.dtype)

    def with_batch(self, batch: int) -> InputSpec:
        return InputSpec((batch, *self.shape[1:]), self.dtype) if self.shape else self

    def __str__(self) -> str:
        text = format_shape(self.shape) or "scalar"
        return text if self.dtype == "float32" else f"{text}:{self.dtype}"

    @classmethod
    def of(cls, value: object) -> InputSpec:
        """An InputSpec from an InputSpec, a ``SHAPE[:DTYPE]`` string, or a sequence of ints."""
        if isinstance(value, InputSpec):
            return value
        if isinstance(value, str):
            return parse_input(value)
        if isinstance(value, Iterable):
            dims = tuple(value)
            if all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
                if any(d < 0 for d in dims):
                    raise UsageError(f"input shape {list(dims)} has a negative size; every size must be at least 0.")
                return cls(dims)
        raise UsageError(f"cannot read {value!r} as an input; give a shape such as (1, 3, 224, 224) or a string such as '2x32:int64'.")


def check_size(shape: Shape, text: str) -> None:
    """One sentence instead of an int64 overflow deep inside torch."""
    if len(shape) > MAX_RANK:
        raise UsageError(f"input {text} has {len(shape)} dimensions; archviz accepts at most {MAX_RANK}.")
    numel = math.prod(shape)
    if numel > MAX_ELEMENTS:
        raise UsageError(
            f"input {text} has {numel:.3g} elements, more than archviz accepts per input ({MAX_ELEMENTS:,} = 2^53); "
            "use a smaller batch or size (shapes and parameters do not depend on the batch)."
        )


def parse_input(text: str) -> InputSpec:
    """Parse ``SHAPE[:DTYPE]`` (``1x3x224x224``, ``2x32:int64``, ``8x128x256:bf16``), or raise UsageError."""
    raw = (text or "").strip().lower()
    shape_text, sep, dtype_text = raw.partition(":")
    if not shape_text:
        raise UsageError(f"--input {text!r} is empty; {GRAMMAR}.")
    dims = []
    for part in shape_text.split("x"):
        part = part.strip()
        ascii_digits = part.isascii() and part.isdigit()  # str.isdigit alone takes '²' and other digits int() refuses
        if part.startswith("-") and part[1:].isascii() and part[1:].isdigit():
            raise UsageError(f"--input {text!r}: every size must be at least 1, got {part}; {GRAMMAR}.")
        if not ascii_digits:  # no sign, no spaces, no '1e3', no '²'
            raise UsageError(f"--input {text!r}: {part!r} is not a whole number written with 0-9; {GRAMMAR}.")
        if len(part.lstrip("0")) > 16:  # past 2^53 elements anyway; int() refuses over 4,300 digits
            raise UsageError(f"--input {text[:30]!r}...: a size has {len(part.lstrip('0')):,} digits; sizes must stay below 10^16.")
        value = int(part)
        if value <= 0:
            raise UsageError(f"--input {text!r}: every size must be at least 1, got {value}; {GRAMMAR}.")
        dims.append(value)
    dtype = "float32"
    if sep:
        dtype_text = dtype_text.strip()
        if dtype_text not in DTYPES:
            from archviz.spec.loader import suggest

            names = ", ".join(sorted(set(DTYPES.values())))
            raise UsageError(f"--input {text!r}: unknown dtype {dtype_text!r}{suggest(dtype_text, list(DTYPES))} (dtypes: {names}).")
        dtype = DTYPES[dtype_text]
    if len(dims) > MAX_RANK:
        raise UsageError(f"--input {text!r} has {len(dims)} dimensions; archviz accepts at most {MAX_RANK}.")
    check_size(tuple(dims), text)
    return InputSpec(tuple(dims), dtype)


def parse_inputs(texts: Iterable[str] | str | None) -> tuple[InputSpec, ...] | None:
    """Every ``--input`` given, in order; None when there was none (use the architecture's default)."""
    if texts is None:
        return None
    if isinstance(texts, str):
        texts = [texts]
    specs = tuple(parse_input(t) for t in texts)
    return specs or None


def format_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def format_inputs(inputs: Iterable[InputSpec]) -> str:
    """``1x3x224x224``, or ``1x3x224x224, 1x3x224x224`` for several."""
    return ", ".join(str(i) for i in inputs)


def as_inputs(inputs: object) -> tuple[InputSpec, ...] | dict[str, InputSpec]:
    """One shape, one InputSpec or string, a sequence of them (positional inputs), or a mapping (keyword inputs)."""
    from collections.abc import Mapping

    if isinstance(inputs, Mapping):
        return {str(k): InputSpec.of(v) for k, v in inputs.items()}
    if isinstance(inputs, InputSpec | str):
        return (InputSpec.of(inputs),)
    if not isinstance(inputs, Iterable):
        raise UsageError(f"cannot read {inputs!r} as inputs; give a shape such as (1, 3, 224, 224), '2x32:int64', or a list of them.")
    items = list(inputs)
    if not items:
        raise UsageError("no input given; give at least one shape, e.g. (1, 3, 224, 224).")
    if all(isinstance(d, int) and not isinstance(d, bool) for d in items):
        return (InputSpec.of(items),)
    return tuple(InputSpec.of(i) for i in items)
