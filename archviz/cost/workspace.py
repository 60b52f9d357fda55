"""Scratch memory that kernels allocate and free inside one operator, invisible to the dispatcher.

These rules describe what PyTorch's CPU kernels were measured to do (torch 2.14, oneDNN,
see benchmarks/memory_accuracy.py); they add to the live bytes at the operator that runs.

- Convolutions on a CPU go to oneDNN (``mkldnn_convolution``) unless ATen's heuristic
  (``ConvParams::use_mkldnn``) picks its own im2col kernel (``slow_conv2d``). oneDNN computes
  in a channel-blocked layout (blocks of 16 channels with AVX-512, 8 otherwise) and copies
  tensors in and out of it: the output in its blocked form, the weights reordered, and the
  input reordered when its channel count is a whole number of blocks. Backward reorders
  the output gradient, the input (again only when blocked) and the weight gradient.
  ``slow_conv2d`` unfolds its input into columns (Cin x k x k rows, one per output pixel).
- Batch norm's CPU backward makes one copy the size of its input.

On a GPU the equivalent scratch (cuDNN workspaces) depends on the algorithm cuDNN picks at
run time; it is not modelled (``cuda_workspace`` returns 0), see the README's limits.
"""

from __future__ import annotations

from typing import Any

import torch


def _block() -> int:
    return 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8


def _blocked(channels: int, block: int) -> int:
    return -(-channels // block) * block


def _uses_onednn(x: torch.Tensor, w: torch.Tensor, stride, dilation, transposed: bool, groups: int) -> bool:
    """ATen's ``ConvParams::use_mkldnn`` for CPU tensors (aten/src/ATen/native/Convolution.cpp)."""
    if not torch.backends.mkldnn.is_available() or not torch.backends.mkldnn.enabled:
        return False
    if x.dtype in (torch.bfloat16, torch.float16):
        return True
    if x.dtype != torch.float32 or x.dim() != 4:
        return False
    n, c, h, wd = x.shape
    kh, kw = w.shape[-2:]
    strided = any(s != 1 for s in stride)
    dilated = any(d != 1 for d in dilation)
    worth = strided or dilated or n >= 16 or kw != 1 or kh != 1 or torch.get_num_threads() > 1
    big = groups > 1 or (kw > 3 and kh > 3) or n > 1 or n * c * h * wd > 20480
    return worth and big


def _conv_forward(args: tuple) -> int:
    x, w = args[0], args[1]
    stride, padding, dilation, transposed, _, groups = args[3:9]
    if transposed or x.dim() != 4:
        return 0
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    e = x.element_size()
    if not _uses_onednn(x, w, stride, dilation, transposed, groups):
        pointwise = kh == kw == 1 and all(s == 1 for s in stride) and all(p == 0 for p in padding)
        return 0 if pointwise else e * n * c * kh * kw * ho * wo  # im2col columns
    b = _block()
    out = e * n * _blocked(o, b) * ho * wo
    weights = e * _blocked(o, b) * (_blocked(i, b) if groups == 1 else i) * kh * kw
    if c % b == 0:
        return max(out, e * n * c * h * wd + weights)
    return out


def _conv_backward(args: tuple) -> int:
    grad, x, w = args[0], args[1], args[2]
    stride, padding, dilation, transposed, _, groups = args[4:10]
    if transposed or x.dim() != 4:
        return 0
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    e = x.element_size()
    if not _uses_onednn(x, w, stride, dilation, transposed, groups):
        pointwise = kh == kw == 1 and all(s == 1 for s in stride) and all(p == 0 for p in padding)
        return 0 if pointwise else e * n * c * kh * kw * grad.shape[2] * grad.shape[3]
    b = _block()
    grad_blocked = e * n * _blocked(o, b) * grad.shape[2] * grad.shape[3]
    x_blocked = e * n * c * h * wd if c % b == 0 else 0
    weights = e * _blocked(o, b) * (_blocked(i, b) if groups == 1 else i) * kh * kw
    return max(weights, grad_blocked + x_blocked)


def cpu_workspace(func: Any, args: tuple, kwargs: dict, out: Any) -> int:
    """Bytes a CPU kernel holds inside ``func`` beyond its inputs and outputs."""
    name = func.overloadpacket.__name__
    if name == "convolution":
        return _conv_forward(args)
    if name == "convolution_backward":
        return _conv_backward(args)
    if name == "native_batch_norm_backward":
        return args[1].numel() * args[1].element_size()
    if name == "native_batch_norm" and args[0].dim() >= 2:
        return 2 * args[0].shape[1] * 4  # per-channel mean and inverse std, fp32
    return 0


def cuda_workspace(func: Any, args: tuple, kwargs: dict, out: Any) -> int:
    """cuDNN/cuBLAS scratch is chosen at run time on the GPU; not modelled."""
    return 0
