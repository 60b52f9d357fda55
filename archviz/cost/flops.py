"""FLOPs per block, as a view of the trace, and the ops nobody has a FLOP rule for.

Convention (torch.utils.flop_counter's, and torchvision's ``_ops``): a multiply-add is one
MAC and two FLOPs (FLOPs = 2 x MACs). Only convolutions, linear layers and matrix products
(attention's included) are counted; pooling, normalisation, activations, dropout, adds,
concatenations and reshapes count 0 by convention, as they do in torchvision and
torchinfo. Leaf modules and functions that fit none of these are *listed* by
:func:`uncounted_ops`, never silently taken as zero.
"""

from __future__ import annotations

from archviz.trace.record import Trace

# Leaf module types whose FLOPs the trace counts (FlopCounterMode formulas / spec arithmetic).
COUNTED_MODULES = frozenset(
    {"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Linear", "LazyLinear", "Bilinear", "MultiheadAttention"}
)
# Leaf module types that count 0 by the convention above.
ZERO_MODULES = frozenset(
    {
        # activations
        "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Sigmoid", "Tanh",
        "Hardswish", "Hardsigmoid", "Hardtanh", "Softplus", "Softsign", "Softmax", "LogSoftmax", "Threshold",
        # normalisation
        "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
        "InstanceNorm3d", "LocalResponseNorm", "RMSNorm",
        # pooling
        "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
        # data movement, regularisation
        "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "StochasticDepth", "Flatten", "Unflatten",
        "Identity", "ZeroPad2d", "ConstantPad2d", "ReflectionPad2d", "ReplicationPad2d", "Upsample", "PixelShuffle",
        "ChannelShuffle",
    }
)  # fmt: skip
# Functions between modules (names as the module trace records them).
COUNTED_FUNCTIONS = frozenset({"matmul", "mm", "bmm", "addmm", "baddbmm", "linear", "conv1d", "conv2d", "conv3d", "einsum", "scaled_dot_product_attention"})
ZERO_FUNCTIONS = frozenset(
    {
        "add", "sub", "mul", "div", "truediv", "floordiv", "neg", "pow", "sqrt", "rsqrt", "exp", "log", "abs", "clamp",
        "relu", "relu6", "sigmoid", "tanh", "gelu", "silu", "hardswish", "hardsigmoid", "softmax", "log_softmax", "dropout",
        "cat", "concat", "stack", "flatten", "view", "reshape", "permute", "transpose", "t", "unsqueeze", "squeeze",
        "expand", "expand_as", "contiguous", "chunk", "split", "getitem", "unbind", "narrow", "select", "to", "float",
        "mean", "sum", "amax", "max", "min", "adaptive_avg_pool2d", "adaptive_max_pool2d", "avg_pool2d", "max_pool2d",
        "interpolate", "pad", "layer_norm", "batch_norm", "group_norm", "channel_shuffle", "roll", "repeat", "clone",
    }
)  # fmt: skip


def uncounted_ops(trace: Trace) -> list[str]:
    """``'path (Type)'`` for every leaf module or function that counted 0 FLOPs without a rule saying 0 is right."""
    out = []
    for node in trace.nodes:
        if node.is_leaf and node.type not in COUNTED_MODULES and node.type not in ZERO_MODULES and node.flops == 0:
            out.append(f"{node.path} ({node.type})")
    for op in trace.ops:
        # A function the FLOP counter saw doing arithmetic (attention, say) is counted, whatever its name.
        if op.kind == "function" and op.flops == 0 and op.type not in COUNTED_FUNCTIONS and op.type not in ZERO_FUNCTIONS:
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
