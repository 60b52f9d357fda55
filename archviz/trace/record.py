"""What a trace holds: per-module records, the dataflow graph, and totals. No torch here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of the network: its name, shape and dtype (torch's name)."""

    name: str  # "input"/"output" when there is one; else the forward argument, the dict key or the index path
    shape: Shape
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Node:
    """One module of the network, as called on the traced input (first call only)."""

    path: str  # dotted module path as in named_modules(); "" is the whole model
    type: str  # class name, or the block kind for spec blocks (VGGBlock, Inception, ...)
    depth: int  # 0 for the model, 1 for top-level blocks
    is_leaf: bool
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    params: int  # parameters under this module; a shared tensor counts once
    trainable_params: int
    # Forward FLOPs under this module, FLOPs = 2 x MACs, counting convolutions and
    # matrix products (torch.utils.flop_counter's convention; pooling, norms, activations: 0).
    flops: int = 0
    attrs: Mapping[str, Any] = field(default_factory=dict)  # kernel_size, stride, ... as torch names them
    # False for a module the forward never called: a container (ModuleList, ModuleDict, a
    # holder of children) or an unused one (an auxiliary head in eval mode), and for a
    # parameter held directly by a module with children; output_shape is then ().
    called: bool = True

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1] if self.path else ""

    @property
    def macs(self) -> int:
        return self.flops // 2


@dataclass(frozen=True)
class Op:
    """A vertex of the dataflow graph: a leaf module call or a function between modules."""

    id: str  # leaf module path, or "<enclosing module path>:<function>[#k]"; "input" / "output"
    kind: str  # "module", "function", "input", "output"
    type: str  # module class, function name ("cat", "add", ...), "Input", "Output"
    module: str  # path of the leaf module, or the module whose forward called the function
    inputs: tuple[str, ...]  # ids of the ops whose outputs this op reads, in argument order
    output_shape: Shape
    # Forward FLOPs of a function op, same convention as Node.flops (a module op's are on its Node).
    flops: int = 0


@dataclass(frozen=True)
class Trace:
    """Everything archviz knows about one architecture on one input: shapes, params, FLOPs, graph."""

    arch: str
    input_shape: Shape
    nodes: tuple[Node, ...]  # pre-order: each module right before its children; nodes[0] is the model
    ops: tuple[Op, ...]  # execution order, starting with "input" and ending with "output"
    total_params: int
    trainable_params: int
    # Things that run but are probably not what was meant (a linear layer on a 4-D tensor), one sentence each.
    warnings: tuple[str, ...] = field(default=(), compare=False)
    inputs: tuple[TensorInfo, ...] = ()  # every input, in the order forward takes them; default: one float input_shape
    outputs: tuple[TensorInfo, ...] = ()  # every tensor the model returns, flattened; default: one output_shape
    # Leaf module paths and function op ids inside which a matrix product ran that the FLOP counter has
    # no formula for (cdist, an FFT, CPU flash attention): the only zero counts that are omissions (issue 19).
    unruled: tuple[str, ...] = field(default=(), compare=False)
    # What tables and diagrams call the network when not ``arch`` (the ARCH as given): a callable's
    # display name (``timm convnext_tiny`` for ``timm:create_model -p model_name=convnext_tiny``) or --title.
    title: str = field(default="", compare=False)
    # A drawing hint from the spec ("u": an encoder-decoder drawn as a U); "" for the usual top-to-bottom flow.
    layout: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.inputs:
            object.__setattr__(self, "inputs", (TensorInfo("input", tuple(self.input_shape)),))
        if not self.outputs:
            object.__setattr__(self, "outputs", (TensorInfo("output", tuple(self.root.output_shape)),))

    @property
    def display_name(self) -> str:
        """``title`` if there is one, else ``arch``."""
        return self.title or self.arch

    @property
    def root(self) -> Node:
        return self.nodes[0]

    @property
    def output_shape(self) -> Shape:
        """The first output's shape: the output, for a model that returns one tensor."""
        return self.outputs[0].shape if self.outputs else ()

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def flops(self) -> int:
        return self.root.flops

    @property
    def max_depth(self) -> int:
        return max(n.depth for n in self.nodes)

    def blocks(self, depth: int = 1) -> list[Node]:
        """Modules at ``depth``, plus leaves that sit shallower (as torchinfo's depth does)."""
        return [n for n in self.nodes if n.depth == depth or (n.is_leaf and 0 < n.depth < depth)]

    def node(self, path: str) -> Node:
        for n in self.nodes:
            if n.path == path:
                return n
        raise KeyError(path)

    def children(self, path: str) -> list[Node]:
        prefix = f"{path}." if path else ""
        depth = self.node(path).depth + 1
        return [n for n in self.nodes if n.depth == depth and n.path.startswith(prefix)]
