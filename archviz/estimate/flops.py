"""FLOPs per block, as a view of the trace, and the ops nobody has a FLOP rule for.

Convention (torch.utils.flop_counter's, and torchvision's ``_ops``): a multiply-add is one
MAC and two FLOPs (FLOPs = 2 x MACs). Only convolutions, linear layers and matrix products
(attention's included) are counted; pooling, normalisation, activations, dropout, adds,
concatenations and reshapes count 0 by convention, as they do in torchvision and
torchinfo. The FLOP counter works on the aten ops a forward runs, so a module or function
it counts 0 whatever its name (timm's DropPath, LayerNorm2d, LayerScale, ``reshape_as``,
``type_as``) did no matrix product and is 0 under the convention too. What it can miss is a
matrix product it has no formula for (``cdist``, an FFT, CPU flash attention): a leaf module
or function in which one ran, and that no rule covers, is *listed* by :func:`uncounted_ops`,
never silently taken as zero. (A matrix product written as elementwise multiply-and-sum in
Python is not a matrix product to the counter either: it counts 0 and is not listed.)
"""

from __future__ import annotations

from archviz.spec import ops as O
from archviz.trace.record import Trace

# Which module types and functions have a FLOP rule (computed, or 0 by convention): the op table's.
COUNTED_MODULES = frozenset(name for name, t in O.TORCH_TYPES.items() if t.flops == O.COUNTED)
ZERO_MODULES = frozenset(name for name, t in O.TORCH_TYPES.items() if t.flops == O.ZERO)
COUNTED_FUNCTIONS = frozenset(name for name, f in O.FUNCTIONS.items() if f.flops == O.COUNTED)
ZERO_FUNCTIONS = frozenset(name for name, f in O.FUNCTIONS.items() if f.flops == O.ZERO)


def uncounted_ops(trace: Trace) -> list[str]:
    """``'path (Type)'`` for every leaf module or function without a rule that ran a matrix product the counter could not count."""
    unruled = set(trace.unruled)
    out = []
    for node in trace.nodes:
        if node.is_leaf and node.called and node.type not in COUNTED_MODULES and node.type not in ZERO_MODULES and node.flops == 0 and node.path in unruled:
            out.append(f"{node.path} ({node.type})")
    for op in trace.ops:
        # A function the FLOP counter saw doing arithmetic (attention, say) is counted, whatever its name.
        if op.kind == "function" and op.flops == 0 and op.type not in COUNTED_FUNCTIONS and op.type not in ZERO_FUNCTIONS and op.id in unruled:
            out.append(f"{op.id} ({op.type})")
    return out


def training_flops_per_image(trace: Trace) -> int:
    """Forward + backward FLOPs per image: 3 x forward.

    The backward pass of a convolution or linear layer computes two products the size of
    its forward one (the gradients with respect to the input and to the weights), so a
    training step costs about three forward passes (Kaplan et al. 2020, "6N per token").
    """
    batch = trace.input_shape[0] if trace.input_shape else 1
    return 3 * trace.flops // max(batch, 1)
