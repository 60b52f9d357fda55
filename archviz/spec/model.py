"""The spec data model: an architecture as frozen dataclasses, no torch needed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Layer:
    """One entry of a layer list: an op name and its named fields.

    Field values are numbers, strings, parameter expressions (strings such as
    ``"64 // ratio"``), tuples of ints, or — for block ops — tuples of ``Layer``.
    """

    op: str
    args: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    # Where the layer was written, for error messages; not part of its identity.
    source: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)

    def where(self) -> str:
        if self.source and self.line:
            return f"{self.source}:{self.line}"
        return self.source or "<spec>"


@dataclass(frozen=True)
class BlockDef:
    """A block a spec file defines once under ``blocks:`` and uses like a built-in macro.

    ``params`` maps each parameter to its default; ``None`` marks a required one. The
    body's expressions see these parameters and the spec's, nothing of the caller's.
    """

    name: str
    params: Mapping[str, int | float | bool | str | None]
    layers: tuple[Layer, ...]
    source: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        """The label shown as the block's type: ``dense_layer`` -> ``DenseLayer``."""
        return "".join(part[:1].upper() + part[1:] for part in self.name.split("_"))


# `repeat: {times: N, index: i, layers: [...]}` is expanded in place by the resolver.
REPEAT = "repeat"


@dataclass(frozen=True)
class Spec:
    """A whole architecture: metadata, parameters with defaults, and the layer list."""

    name: str
    layers: tuple[Layer, ...]
    description: str = ""
    # NxCxHxW; the C entry always equals the ``in_channels`` parameter.
    default_input: tuple[int, ...] = (1, 1, 224, 224)
    params: Mapping[str, int | float | bool | str] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)
    # User-defined blocks by name, in the order they are defined.
    blocks: Mapping[str, BlockDef] = field(default_factory=dict)
    # A drawing hint for `archviz diagram`: "u" draws an encoder-decoder as a U (one row per resolution).
    layout: str = ""


# Every spec has these two parameters, so a user can always retarget a network.
STANDARD_PARAMS: dict[str, int] = {"in_channels": 1, "num_classes": 10}
