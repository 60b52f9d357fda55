"""Scratch memory that kernels allocate and free inside one operator, invisible to the dispatcher.

These rules describe what PyTorch's CPU kernels were measured to do (torch 2.14, oneDNN 3.12,
see benchmarks/memory_accuracy.py); they add to the live bytes at the operator that runs.
They read the facts the kernels decide by (:class:`CpuFacts`: oneDNN's ISA as capped by
``ONEDNN_MAX_CPU_ISA``, ATen's capability, the thread count, native bf16), never a constant
of the machine they were fitted on; ``tests/test_memory.py`` checks them against real steps
under the CPU's own ISA and under AVX2, with 1 and 2 threads.

- Convolutions on a CPU go to oneDNN (``mkldnn_convolution``) unless ATen's heuristic
  (``ConvParams::use_mkldnn``) picks its own im2col kernel (``slow_conv2d``). oneDNN computes
  in a channel-blocked layout (blocks of 16 channels with AVX-512, 8 otherwise) and copies
  tensors in and out of it: the output in its blocked form, the weights reordered, and the
  input reordered when its channel count is a whole number of blocks. Backward runs
  backward-data and backward-weights one after the other, each with its own blocked copies
  (``_conv_backward`` says which kernel blocks what). Below AVX-512 BF16, oneDNN runs bf16
  convolutions with its gemm kernels (im2col columns). With AMX (``CpuFacts.amx``) it runs them
  with its brgemm kernels in NHWC: ``_amx_conv_forward`` and ``_amx_conv_backward``.
  ``slow_conv2d`` unfolds its input into columns (Cin x k x k rows, one per output pixel).
- Batch norm's CPU backward makes one copy the size of its input.

On a GPU the equivalent scratch (cuDNN workspaces) depends on the algorithm cuDNN picks at
run time; it is not modelled (docs/limits.md).
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from typing import Any

import torch

# oneDNN's ISA names, weakest first (dnnl_cpu_isa_t; ONEDNN_MAX_CPU_ISA takes them in capitals).
ONEDNN_ISAS = (
    "sse41",
    "avx",
    "avx2",
    "avx2_vnni",
    "avx2_vnni_2",
    "avx512_core",
    "avx512_core_vnni",
    "avx512_core_bf16",
    "avx10_1_512",
    "avx10_1_512_amx",
    "avx10_1_512_amx_fp16",
)
_ALIASES = {"avx512_core_fp16": "avx10_1_512", "avx512_core_amx": "avx10_1_512_amx", "avx512_core_amx_fp16": "avx10_1_512_amx_fp16"}


@dataclass(frozen=True)
class CpuFacts:
    """What the CPU kernels decide by: read from the running process, as the kernels read it.

    ``aten``: ATen's dispatch capability (``torch.backends.cpu.get_cpu_capability()``, which
    obeys ``ATEN_CPU_CAPABILITY``). ``onednn``: the ISA oneDNN runs (the CPU's, capped by
    ``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA`` as oneDNN caps it). ``threads``: torch's
    intra-op threads. ``bf16``: whether ATen hands bf16 convolutions and matmuls to oneDNN
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``, the check ATen itself makes). ``l2``: the
    per-core L2 cache in bytes, which oneDNN's AMX kernels block by (2 MiB when the OS does not say).
    """

    aten: str
    onednn: str
    threads: int
    bf16: bool
    l2: int = 2 << 20

    @classmethod
    def here(cls) -> CpuFacts:
        return cls(torch.backends.cpu.get_cpu_capability(), onednn_isa(), torch.get_num_threads(), _mkldnn_bf16(), _l2_bytes())

    @property
    def native_bf16(self) -> bool:
        """Whether oneDNN's bf16 kernels are native here (AVX-512 BF16 and up); below, it runs gemm kernels."""
        return ONEDNN_ISAS.index(self.onednn) >= ONEDNN_ISAS.index("avx512_core_bf16")

    @property
    def amx(self) -> bool:
        """Whether oneDNN runs bf16 convolutions and matmuls on AMX tiles (its brgemm kernels)."""
        return ONEDNN_ISAS.index(self.onednn) >= ONEDNN_ISAS.index("avx10_1_512_amx")

    @property
    def block(self) -> int:
        """oneDNN's channel block: 16 floats in an AVX-512 register, 8 in an AVX/AVX2 one."""
        return 16 if ONEDNN_ISAS.index(self.onednn) >= ONEDNN_ISAS.index("avx512_core") else 8

    def describe(self) -> str:
        return f"oneDNN {self.onednn}, ATen {self.aten}, {self.threads} thread{'s' if self.threads != 1 else ''}, bf16 {'native' if self.bf16 else 'emulated'}"


def onednn_isa() -> str:
    """The ISA oneDNN's kernels use here: the hardware's best, capped by ONEDNN_MAX_CPU_ISA."""
    from archviz.compat import cpu_isa_flags

    flags = cpu_isa_flags()
    if flags["avx512_bf16"] and flags["amx_tile"]:
        # oneDNN's avx512_core_amx wants AMX tiles, AMX-BF16, AMX-INT8 and AVX512-FP16 (cpu_isa_traits.hpp, mayiuse); torch asks
        # cpuinfo for the tiles and AMX-FP16 only, and every CPU with AMX tiles so far (Sapphire Rapids on) has the other three
        hardware = "avx10_1_512_amx_fp16" if flags["amx_fp16"] else "avx10_1_512_amx"
    elif flags["avx512_bf16"]:
        hardware = "avx512_core_bf16"
    elif flags["avx512"]:
        hardware = "avx512_core"
    elif flags["avx2"]:
        hardware = "avx2"
    else:
        hardware = "sse41"
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().lower()
    cap = _ALIASES.get(cap, cap)
    if cap in ONEDNN_ISAS and ONEDNN_ISAS.index(cap) < ONEDNN_ISAS.index(hardware):
        return cap
    return hardware


@functools.cache
def _l2_bytes() -> int:
    """The per-core L2 cache (Linux sysfs, as oneDNN's ``platform::get_per_core_cache_size(2)`` reads it by cpuid); 2 MiB elsewhere."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as f:
            text = f.read().strip().upper()
        return int(text[:-1]) * {"K": 1 << 10, "M": 1 << 20}[text[-1]] if text[-1] in "KM" else int(text)
    except (OSError, ValueError):
        return 2 << 20


def _mkldnn_bf16() -> bool:
    from archviz.compat import mkldnn_bf16_supported

    return mkldnn_bf16_supported()


def _blocked(channels: int, block: int) -> int:
    return -(-channels // block) * block


def _uses_onednn(x: torch.Tensor, w: torch.Tensor, stride, dilation, transposed: bool, groups: int, facts: CpuFacts) -> bool:
    """ATen's ``ConvParams::use_mkldnn`` for CPU tensors (aten/src/ATen/native/Convolution.cpp)."""
    if not torch.backends.mkldnn.is_available() or not torch.backends.mkldnn.enabled:
        return False
    if x.dtype in (torch.bfloat16, torch.float16):
        return facts.bf16
    if x.dtype != torch.float32 or x.dim() != 4:
        return False
    n, c, h, wd = x.shape
    kh, kw = w.shape[-2:]
    strided = any(s != 1 for s in stride)
    dilated = any(d != 1 for d in dilation)
    worth = strided or dilated or n >= 16 or kw != 1 or kh != 1 or facts.threads > 1
    big = groups > 1 or (kw > 3 and kh > 3) or n > 1 or n * c * h * wd > 20480
    return worth and big


def _conv_forward(args: tuple, facts: CpuFacts) -> int:
    x, w = args[0], args[1]
    stride, padding, dilation, transposed, _, groups = args[3:9]
    if transposed or x.dim() != 4:
        return 0
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    e = x.element_size()
    if not _uses_onednn(x, w, stride, dilation, transposed, groups, facts):
        if _low_precision_depthwise(x, i, o, groups):
            return e * n * o * ho * wo  # ATen's per-group loop: every group's output, then their concatenation
        pointwise = kh == kw == 1 and all(s == 1 for s in stride) and all(p == 0 for p in padding)
        return 0 if pointwise else e * n * c * kh * kw * ho * wo  # im2col columns
    if x.dtype in (torch.bfloat16, torch.float16) and not facts.native_bf16:
        return 0 if (kh == kw == 1 and all(st == 1 for st in stride)) else e * n * c * kh * kw * ho * wo  # oneDNN's gemm kernel: im2col
    if x.dtype in (torch.bfloat16, torch.float16) and facts.amx and groups == 1 and not channels_last_conv(x, w):
        return _amx_conv_forward(x, w, padding, e * n * o * ho * wo, facts)
    b = facts.block
    if channels_last_conv(x, w):
        return _conv_forward_channels_last(o, i, kh, kw, groups, e, b, _one_weight_copy(kh, kw, b, facts))
    out = e * n * _blocked(o, b) * ho * wo
    weights = e * _blocked(o, b) * (_blocked(i, b) if groups == 1 else i) * kh * kw
    if c % b == 0:
        return max(out, e * n * c * h * wd + weights)
    return out


def _low_precision_depthwise(x: torch.Tensor, i: int, o: int, groups: int) -> bool:
    """A bf16/fp16 depthwise convolution that ATen keeps from oneDNN (no native bf16 there: an AVX2 CPU, or
    ``ONEDNN_MAX_CPU_ISA=AVX2``): aten/src/ATen/native/Convolution.cpp runs it group by group (``_convolution_nogroup``)
    and concatenates; measured (torch.profiler, AVX2, 1 and 2 threads): scratch the size of the output forward, of the
    input plus weights backward, whatever the layout."""
    return x.dtype in (torch.bfloat16, torch.float16) and i == 1 and groups == o and groups > 1


def channels_last_conv(x: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether ATen runs oneDNN in NHWC: ``mkldnn_conv_use_channels_last`` (aten/src/ATen/native/ConvUtils.h) asks the
    input's and the weight's ``suggest_memory_format``; a tensor that is both contiguous and channels-last counts as contiguous."""

    def nhwc(t: torch.Tensor) -> bool:
        return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()

    return nhwc(x) or nhwc(w)


def _one_weight_copy(kh: int, kw: int, b: int, facts: CpuFacts) -> bool:
    """oneDNN's AVX2 1x1 NHWC kernels with 2+ threads read the plain weights: one weight copy fewer forward and backward
    (measured with torch.profiler on ConvNeXt's 1x1 layers; with 1 thread, and on AVX-512, both copies are made)."""
    return kh == kw == 1 and b == 8 and facts.threads > 1


def _conv_forward_channels_last(o: int, i: int, kh: int, kw: int, groups: int, e: int, b: int, one_copy: bool = False) -> int:
    """oneDNN's NHWC forward (aten/src/ATen/native/mkldnn/Conv.cpp, ``_mkldnn_convolution`` with a channels-last
    memory format): input and output stay in the tensors' own NHWC layout, only the weights are reordered. A depthwise
    kernel keeps one blocked copy of them (channels padded to the block); other kernels keep a plain copy and a blocked one.
    Measured with torch.profiler: exact for depthwise convolutions; dense ones add 8-30 KB of oneDNN scratchpad, not modelled."""
    if i == 1 and groups == o:
        return e * _blocked(o, b) * kh * kw
    return (1 if one_copy else 2) * e * o * i * kh * kw


def _depthwise_channels_last_backward(o: int, kh: int, kw: int, groups: int, e: int, b: int, mask: Any) -> int:
    """oneDNN's NHWC depthwise backward-weights (the issue-19 ConvNeXt case): the weight gradient is computed in a
    grouped, blocked format that pads each group's single input and output channel to a full block, a buffer of
    groups x block x block x kh x kw elements (36.75 MiB for a 768-channel 7x7 convolution with 16-channel blocks),
    beside a plain copy of the weights and the bias gradient. It does not depend on the batch or the image size.
    Measured with torch.profiler on AVX-512 (16-channel blocks) and AVX2 (8), 1 and 2 threads, 16-768 channels, k = 3-9."""
    if not mask[1]:
        return 0
    padded = e * groups * b * b * kh * kw if kh * kw > 9 else 0  # 3x3 and smaller: oneDNN's dw kernel handles NHWC directly
    return padded + e * o * kh * kw + (e * o if mask[2] else 0)


def _dense_channels_last_backward(o: int, i: int, kh: int, kw: int, groups: int, e: int, b: int, mask: Any, one_copy: bool = False) -> int:
    """oneDNN's NHWC backward for other convolutions: backward-data reads the weights reordered into blocks;
    backward-weights writes a blocked weight gradient and two plain weight-sized copies before the result is copied out.
    Input and output gradients stay NHWC, with no blocked copies. Measured with torch.profiler (AVX-512 and AVX2, 1 and 2
    threads); a strided backward-data adds oneDNN scratchpad (up to about a third of the input gradient), not modelled."""
    blocked = e * _blocked(o, b) * (_blocked(i, b) if groups == 1 else i) * kh * kw
    plain = e * o * i * kh * kw
    if one_copy:
        return 2 * plain if mask[1] else plain
    return max(blocked if mask[0] else 0, blocked + 2 * plain if mask[1] else 0)


# oneDNN's backward-weights kernels split the batch over threads when there are fewer output
# channel blocks than threads, and reduce the per-thread weight gradients in a scratchpad: a
# copy of the blocked weight gradient per extra thread plus bookkeeping. The bookkeeping was
# measured (torch.profiler, oneDNN 3.12) at 20,736-20,928 bytes with 16-channel blocks and
# 24,768 with 8-channel blocks, for every shape tried; it is the one estimated term here.
REDUCTION_EXTRA = {16: 20_928, 8: 24_768}


def _conv_backward(args: tuple, facts: CpuFacts) -> int:
    """oneDNN's backward pass: backward-data, then backward-weights, each in its own blocked copies.

    Backward-data (when the input needs a gradient) reorders the output gradient and the
    weights into blocks, computes the input gradient blocked and copies it out. Backward-weights
    runs with 16-channel blocks on AVX-512 only when the input channels are a multiple of 16
    or fewer than 4 (a "first" convolution, whose input stays plain); otherwise it falls back
    to the AVX2 kernel with 8-channel blocks. On AVX2 only a 3-channel input stays plain.
    """
    grad, x, w = args[0], args[1], args[2]
    stride, padding, dilation, transposed, _, groups = args[4:10]
    mask = args[10] if len(args) > 10 else (True, True, True)
    if transposed or x.dim() != 4:
        return 0
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    e = x.element_size()
    if not _uses_onednn(x, w, stride, dilation, transposed, groups, facts):
        if _low_precision_depthwise(x, i, o, groups):
            return e * x.numel() + e * o * kh * kw + e * o  # the per-group input gradients, weights and bias gradients
        pointwise = kh == kw == 1 and all(s == 1 for s in stride) and all(p == 0 for p in padding)
        if pointwise:
            return 4 * grad.numel() if x.dtype in (torch.bfloat16, torch.float16) else 0  # bf16 accumulates the gradient in fp32
        return e * n * c * kh * kw * grad.shape[2] * grad.shape[3]
    if x.dtype in (torch.bfloat16, torch.float16) and facts.amx and groups == 1 and not channels_last_conv(x, w):
        return _amx_conv_backward(grad, x, w, stride, padding, mask, args[3] is not None and mask[2], facts)
    b = facts.block
    out_pixels = grad.shape[2] * grad.shape[3]
    if channels_last_conv(x, w) and x.dtype in (torch.bfloat16, torch.float16) and facts.native_bf16 and i == 1 and groups == o and mask[1] and kh * kw > 9:
        # the bf16 NHWC depthwise backward-weights: the padded buffer of _depthwise_channels_last_backward in bf16, its
        # fp32 accumulator, and per-image buffers in oneDNN's scratchpad, estimated at 17 fp32 values per element of one
        # image (measured 66-69 bytes from 14x14 up, independent of the batch, kernel size and threads; 87 at 7x7)
        per_image = 17 * 4 * c * h * wd
        return e * groups * b * b * kh * kw * 3 + e * o * kh * kw * 2 + per_image
    if channels_last_conv(x, w) and x.dtype == torch.float32:
        # ``mkldnn_convolution_backward`` makes ``grad_output.contiguous(memory_format)``: a copy when the gradient
        # arrives in the other layout (aten/src/ATen/native/mkldnn/Conv.cpp)
        copy = 0 if grad.is_contiguous(memory_format=torch.channels_last) else e * grad.numel()
        if i == 1 and groups == o:
            return copy + _depthwise_channels_last_backward(o, kh, kw, groups, e, b, mask)
        return copy + _dense_channels_last_backward(o, i, kh, kw, groups, e, b, mask, _one_weight_copy(kh, kw, b, facts))
    elif x.dtype == torch.float32 and not grad.is_contiguous():
        copy = e * grad.numel()
    else:
        copy = 0
    if x.dtype in (torch.bfloat16, torch.float16):
        columns = e * c * kh * kw * out_pixels  # one image's im2col columns
        if not facts.native_bf16:  # oneDNN's gemm kernel: the gradient in fp32, the batch's columns (twice with an input gradient)
            return max(n * columns, 4 * n * o * out_pixels) + (n * columns if mask[0] else 0)
        if c < 4 and o < 16:  # the bf16 first-convolution kernel keeps about one image's columns
            return columns
    if groups != 1:  # grouped and depthwise kernels: the output gradient and input, blocked
        grad_blocked = e * n * _blocked(o, b) * out_pixels
        x_blocked = e * n * c * h * wd if c % b == 0 else 0
        return copy + max(e * _blocked(o, b) * i * kh * kw, grad_blocked + x_blocked)
    grad_input = e * n * c * h * wd if mask[0] else 0
    outputs = grad_input + (e * o * i * kh * kw if mask[1] else 0) + (e * o if mask[2] else 0)
    peak = 0
    if mask[0]:
        blocked_input_grad = e * n * _blocked(c, b) * h * wd
        peak = max(
            e * n * _blocked(o, b) * out_pixels + e * _blocked(o, b) * _blocked(c, b) * kh * kw + blocked_input_grad,
            blocked_input_grad + grad_input,
        )
    if mask[1]:
        if b == 16 and c >= 4 and c % 16:
            b = 8  # the AVX2 kernel
        first = c < 4 if b == 16 else c == 3
        src = 0 if first else e * n * _blocked(c, b) * h * wd
        weight_grad = e * _blocked(o, b) * (c if first else _blocked(c, b)) * kh * kw
        reduction = 0
        split = min(facts.threads, n)  # threads sharing the batch (a batch of 1 is not split)
        if _blocked(o, b) // b < facts.threads and split > 1:
            reduction = (split - 1) * weight_grad + REDUCTION_EXTRA[b]
        working = e * n * _blocked(o, b) * out_pixels + src + weight_grad + reduction
        peak = max(peak, grad_input + working, outputs + weight_grad)
    return copy + max(peak - outputs, 0)


def _f32(v: float) -> float:
    """Round to a C float: oneDNN's thread balancing compares float costs, and ties decide."""
    return struct.unpack("f", struct.pack("f", v))[0]


def _amx_bwd_w_threads(n: int, c: int, o: int, ih: int, oh: int, kh: int, kw: int, sh: int, sw: int, tr_iw: int, tr_ow: int, threads: int) -> tuple:
    """How oneDNN's AMX backward-weights splits its threads: ``balance_bwd_w`` (src/cpu/x64/jit_brgemm_conv_utils.cpp), its
    memory-cost search over (batch x rows, output-channel, input-channel) splits. Its two empirical overrides (1x1 kernels
    with 28+ threads, and batches of at most half the threads with 64+ channels) are not followed.
    Returns (threads used, batch split, output-channel split, input-channel split)."""
    nb_ic, nb_oc = -(-c // 16), -(-o // 16)
    ic_blk, oc_blk = (2 if nb_ic > 1 else 1), (2 if nb_oc > 1 else 1)
    os_chunks, oc_chunks, ic_chunks = n * oh, -(-nb_oc // oc_blk), -(-nb_ic // ic_blk)
    src_sp, dst_sp = n * ih * tr_iw, n * oh * tr_ow
    comp = _f32(_f32(0.5 * (dst_sp * o * 2 + src_sp * c * 2)) / (o * c * kh * kw * 4))
    ratio = _f32(oc_chunks / ic_chunks)
    src_coef = max(_f32(1 / ratio), 1.0) * (4 if comp < 1 else 1)
    dst_coef, wei_coef = max(ratio, 1.0), max(comp, 1.0)

    def cost(mb: int, ocb: int, icb: int) -> float:
        thr_mb = -(-os_chunks // mb)
        ic_amount = -(-ic_chunks // icb) * 16 * ic_blk
        oc_amount = -(-oc_chunks // (16 * oc_blk * ocb)) * 16 * oc_blk
        src_v = _f32(_f32(2 * src_coef) * ic_amount * (thr_mb * (src_sp // os_chunks) // sh // sw))
        dst_v = _f32(_f32(2 * dst_coef) * oc_amount * thr_mb * (dst_sp // os_chunks))
        wei_v = _f32(_f32(_f32(4 * wei_coef) * oc_amount) * ic_amount * kh * kw)
        return _f32(_f32(src_v + dst_v) + wei_v)

    best, split = cost(1, 1, 1), (1, 1, 1)
    for mb in range(1, min(threads, os_chunks) + 1):
        for ocb in range(1, min(threads // mb, oc_chunks) + 1):
            icb = min(threads // mb // ocb, nb_ic // ic_blk)
            if (v := cost(mb, ocb, icb)) <= best:
                best, split = v, (mb, ocb, icb)
    mb, ocb, icb = split
    if threads // 2 < mb < threads:
        mb = min(os_chunks, threads)
    return mb * ocb * icb, mb, ocb, icb


# Bytes of oneDNN's AMX backward-weights scratchpad beyond the buffers init_scratchpad_bwd_w books: measured (torch.profiler)
# at 16,856-16,920 on every shape tried, 1 and 2 threads; the registry's alignment padding and its context, not traced here.
AMX_BWD_W_EXTRA = 16_920


def _amx_bwd_w_scratchpad(x: torch.Tensor, o: int, kh: int, kw: int, stride, padding, oh: int, ow: int, bias: bool, facts: CpuFacts) -> int:
    """The scratchpad of oneDNN's AMX backward-weights (``brgemm_convolution_bwd_weights_t``), as ``init_conf_bwd_w`` and
    ``init_scratchpad_bwd_w`` (src/cpu/x64/jit_brgemm_conv_utils.cpp) size it: the input transposed into rows of ``tr_iw``
    (the padded width rounded to 32) by 16 channels, one copy per batch split and input-channel block; the output gradient
    transposed likewise (rows of ``tr_ow``); one fp32 weight (and bias) gradient per batch split, to reduce; a page of
    brgemm batch descriptors and two pages of AMX tile buffer per thread. Measured (torch.profiler, bf16, 1 and 2 threads,
    14 shapes): within 64 bytes of AMX_BWD_W_EXTRA plus these buffers."""
    n, c, h, w = x.shape
    sh, sw = stride
    pad_l, pad_r = padding[1], max(0, (ow - 1) * sw + kw - w - padding[1])
    if kh == kw == 1 and sh == sw == 1 and not any(padding) and w <= 28:
        w, h, ow, oh = h * w, 1, oh * ow, 1  # small 1x1 convolutions run as 1-d ones
    tr_iw = _blocked(-(-(w + pad_l + pad_r) // sw), 32) * sw
    tr_ow = _blocked(ow, 2)
    if tr_ow > 32:  # a width that splits into the fewest row blocks of at most 32
        tr_ow = min(range(tr_ow, _blocked(tr_ow, 32) + 1, 2), key=lambda t: (t // max(i for i in range(32, 0, -2) if t % i == 0), t))
    nthr, mb, ocb, icb = _amx_bwd_w_threads(n, c, o, h, oh, kh, kw, sh, sw, tr_iw, tr_ow, facts.threads)
    nb_ic, nb_oc = -(-c // 16), -(-o // 16)
    irow, orow = 4 * tr_iw * 16 * -(-nb_ic // icb), 4 * tr_ow * 16 * -(-nb_oc // ocb)
    oh_block = max(1, int(max(0.0, 0.8 * facts.l2 - kh * irow) / (irow + orow)))
    oh_block = min(oh, -(-oh // -(-oh // oh_block)))
    ih_block = min(h, sh * min(h, (oh_block - 1) * min(kh, sh) + kh))
    tr_src = 2 * (mb * nb_ic * tr_iw * 16 * ih_block + _blocked(max(pad_l, pad_r + 1), 32))
    tr_dst = 2 * (mb * nb_oc * tr_ow * 16 * oh_block + tr_iw * 16)
    reduction = 4 * mb * (nb_oc * 16 * nb_ic * 16 * kh * kw + (nb_oc * 16 if bias else 0))
    return tr_src + tr_dst + reduction + 64 + nthr * (_blocked(oh * 32, 4096) + 2 * 4096) + AMX_BWD_W_EXTRA


def _amx_fwd_scratchpad(c: int, h: int, w: int, kh: int, kw: int, padding, facts: CpuFacts) -> int:
    """oneDNN's AMX forward (and stride-1 backward-data, which runs as one) scratchpad: ESTIMATED, not derived. Per thread
    two pages of AMX tile buffer and a page of batch descriptors (as in the backward-weights one) and, for kernels larger
    than 1x1, one padded image with channels in blocks of 16; plus two pages. The blocking that sizes the real buffers
    (``brg_blocking_t``) is not modelled: measured per-thread parts were 0.5-1.6x this (12 shapes, 1 and 2 threads)."""
    image = 2 * _blocked(c, 16) * (h + 2 * padding[0]) * (w + 2 * padding[1]) if kh * kw > 1 else 0
    return 2 * 4096 + facts.threads * (3 * 4096 + image)


def _amx_conv_forward(x: torch.Tensor, w: torch.Tensor, padding, out_bytes: int, facts: CpuFacts) -> int:
    """oneDNN's AMX bf16 forward (brgemm convolution, src/cpu/x64/jit_brgemm_conv.cpp), plain NCHW tensors from ATen: the
    input reordered to NHWC (no copy with one channel, where both layouts agree), the weights reordered (output channels
    padded to 16, an estimate: 16-64), the scratchpad, the NHWC output; then ideep copies the output back to NCHW through one
    more output-sized buffer. Measured with torch.profiler (bf16, 12 shapes, 1 and 2 threads): the buffer sequence and
    every size but the scratchpad's (see ``_amx_fwd_scratchpad``) and the weights' padding."""
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    e = x.element_size()
    copies = (e * x.numel() if c > 1 else 0) + e * _blocked(o, 16) * i * kh * kw
    return max(copies + _amx_fwd_scratchpad(c, h, wd, kh, kw, padding, facts), 2 * out_bytes)


def _amx_conv_backward(grad: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride, padding, mask: Any, bias: bool, facts: CpuFacts) -> int:
    """oneDNN's AMX bf16 backward, plain NCHW tensors from ATen. Backward-data: the output gradient reordered to NHWC, the
    weights reordered (input channels padded to 16, an estimate), the NHWC input gradient and the scratchpad (estimated by
    ``_amx_fwd_scratchpad``); then the input gradient copied out to NCHW through one more buffer. Backward-weights
    (``brgemm_convolution_bwd_weights_t``): the output gradient and the input (unless it has one channel) reordered to
    NHWC, the weight gradient in OIhw16i16o2i (output channels padded to 16, input channels to 32), the scratchpad
    (``_amx_bwd_w_scratchpad``, from oneDNN's source) and the bias gradient. Measured with torch.profiler (bf16, 12 shapes,
    1 and 2 threads): the buffer sequence and every size but the backward-data scratchpad's and weights' padding."""
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    e = x.element_size()
    out = e * grad.numel()
    grad_input = e * x.numel() if mask[0] else 0
    outputs = grad_input + (e * w.numel() if mask[1] else 0) + (e * o if mask[2] else 0)
    peak = 0
    if mask[0]:
        weights = e * _blocked(i, 16) * o * kh * kw
        peak = max(out + weights + grad_input + _amx_fwd_scratchpad(o, *grad.shape[2:], kh, kw, padding, facts), 3 * grad_input)
    if mask[1]:
        src = e * x.numel() if c > 1 else 0
        weight_grad = e * _blocked(o, 16) * _blocked(i, 32) * kh * kw
        scratch = _amx_bwd_w_scratchpad(x, o, kh, kw, stride, padding, grad.shape[2], grad.shape[3], bias, facts)
        peak = max(peak, grad_input + out + src + weight_grad + scratch + (e * o if bias else 0))
    return max(peak - outputs, 0)


def _onednn_ld(n: int) -> int:
    """oneDNN's ``get_good_ld`` for fp32 (src/cpu/rnn/rnn_utils.hpp): rounded up to 16 floats, plus 16 at a multiple of 256 (cache aliasing)."""
    n = _blocked(n, 16)
    return n + 16 if n % 256 == 0 else n


def _page(n: int) -> int:
    return -(-n // 4096) * 4096


def lstm_workspace_bytes(steps: int, batch: int, inputs: int, hidden: int) -> int:
    """The workspace oneDNN's LSTM layer returns for backward in training (``mkldnn_rnn_layer``'s 4th output).

    torch's meta kernel returns an empty one; the real kernel allocates oneDNN's
    ``workspace_desc`` (src/cpu/rnn/rnn_utils.cpp, one layer and direction per call): the
    gates of every step (T x B x ld(4H)), the hidden states (T x B x ld(H)), and five buffers of
    states over T + 1 steps and 2 layers (three as wide as max(I, H), two as H), each part
    aligned to a 4 KiB page. Measured exact on 13 of 16 shapes (fp32, every ISA and thread
    count gives the same bytes); over by 1-1.8% when 4H is a multiple of 256 floats or H = 200.
    """
    wide, narrow = _onednn_ld(max(inputs, hidden)), _onednn_ld(hidden)
    states = 2 * (steps + 1) * batch
    return _page(4 * steps * batch * _onednn_ld(4 * hidden)) + _page(4 * steps * batch * narrow) + 3 * _page(4 * states * wide) + 2 * _page(4 * states * narrow)


def _lstm_layer(args: tuple, backward: bool) -> int:
    """oneDNN's LSTM layer (``mkldnn_rnn_layer``, aten/src/ATen/native/mkldnn/RNN.cpp, and its backward).

    Inside the kernel: the four gates of every time step (T x B x 4H), the weights reordered
    into oneDNN's layout (4H x (I + H)), the summed bias, a few B x H state buffers and one row
    of H per step; backward adds the gradient of every step's hidden state (T x B x H).
    Measured with torch.profiler (fp32, 14 shapes, AVX-512 and AVX2, 1 and 2 threads: the same
    bytes in all four): within 0.5% for hidden sizes 128-192, within 7% at 64 and below (a few
    KiB). For hidden sizes of 200 and more the backward keeps a further copy of the weights,
    estimated from three shapes only -- named in CPU_UNCERTAIN.
    """
    x, w_ih = args[0], args[1]
    if x.dim() != 3:
        return 0
    steps, batch, inputs = x.shape
    hidden = w_ih.shape[0] // 4
    e = 4  # oneDNN computes and keeps its gates in fp32
    scratch = 4 * hidden * (steps * batch + inputs + hidden + 1) + steps * hidden
    scratch += (steps * batch * hidden + 8 * batch * hidden) if backward else 6 * batch * hidden
    if backward and hidden >= 200:
        # estimated from three shapes: the backward also keeps a copy of the recurrent weights (and of the input
        # weights when the input width is not a multiple of 16) at hidden sizes of 200 and more
        scratch += 4 * hidden * (hidden + (inputs if inputs % 16 else 0))
    return e * scratch


# TensorIterator ops that compute in the inputs' common dtype (build_borrowing_binary_op, comparison ops and
# friends: ``promote_inputs_to_common_dtype``). On a CPU, TensorIteratorBase::compute_types copies every input of
# another dtype into a temporary of the common dtype (``op.tensor().to(common_dtype_)``) before the loop runs; a GPU
# casts inside the kernel instead. ``g * (x > 0)`` copies the bool mask to a float tensor; under autocast an fp32 + bf16
# add copies the bf16 input to fp32.
PROMOTING = frozenset(
    "add sub rsub mul div true_divide floor_divide remainder fmod pow atan2 maximum minimum fmax fmin eq ne lt le gt ge "
    "addcmul addcdiv lerp hypot copysign xlogy logaddexp logaddexp2 nextafter heaviside where".split()
)


def _promotion_copies(name: str, args: tuple) -> int:
    """Bytes of the common-dtype copies a CPU TensorIterator makes of inputs in another dtype (aten/src/ATen/TensorIterator.cpp)."""
    tensors = [a for a in (args[1:] if name == "where" else args) if isinstance(a, torch.Tensor)]  # where's condition stays bool
    if len(tensors) < 2:
        return 0
    common = tensors[0].dtype
    for t in tensors[1:]:
        common = torch.promote_types(common, t.dtype) if t.dim() and tensors[0].dim() else torch.result_type(tensors[0], t)
    size = torch.empty((), dtype=common).element_size()
    return sum(t.numel() * size for t in tensors if t.dtype != common and t.dim())


# Kernels that make a contiguous copy of an input that is not (``input.contiguous()`` / ``expect_contiguous()`` at the
# top of the CPU kernel): softmax (aten/src/ATen/native/SoftMax.cpp: softmax_cpu_out, softmax_backward_cpu_out and the
# log_softmax ones) and layer norm (aten/src/ATen/native/layer_norm.cpp: layer_norm_cpu, layer_norm_backward_cpu).
CONTIGUOUS_INPUTS = {
    "_softmax": (0,),
    "_log_softmax": (0,),
    "_softmax_backward_data": (0, 1),
    "_log_softmax_backward_data": (0, 1),
    "native_layer_norm": (0,),
    "native_layer_norm_backward": (0, 1),
}


def _contiguous_copies(name: str, args: tuple) -> int:
    return sum(
        args[k].numel() * args[k].element_size()
        for k in CONTIGUOUS_INPUTS[name]
        if k < len(args) and isinstance(args[k], torch.Tensor) and not args[k].is_contiguous()
    )


def cpu_workspace(facts: CpuFacts) -> Any:
    """The scratch rule for a CPU with these facts: ``rule(func, args, kwargs, out)`` -> bytes."""

    def rule(func: Any, args: tuple, kwargs: dict, out: Any) -> int:
        return _cpu_scratch(func, args, facts)

    return rule


def _cpu_scratch(func: Any, args: tuple, facts: CpuFacts) -> int:
    """Bytes a CPU kernel holds inside ``func`` beyond its inputs and outputs."""
    name = func.overloadpacket.__name__
    if name == "convolution":
        return _conv_forward(args, facts)
    if name == "convolution_backward":
        return _conv_backward(args, facts)
    if name == "native_batch_norm_backward":
        return args[1].numel() * args[1].element_size()
    base = name.rstrip("_")
    if base in PROMOTING:
        return _promotion_copies(base, args)
    if name == "mean" and args[0].dtype in (torch.bfloat16, torch.float16) and args[0].dim():
        # CPU mean of bf16/fp16 sums in fp32 (aten/src/ATen/native/ReduceOps.cpp, mean_out: "cast_fp32 -> sum -> div"): an fp32 copy of the input
        return 4 * args[0].numel()
    if name in CONTIGUOUS_INPUTS:
        return _contiguous_copies(name, args)
    if name in ("mkldnn_rnn_layer", "mkldnn_rnn_layer_backward"):
        return _lstm_layer(args, backward=name.endswith("backward"))
    if name == "native_batch_norm" and args[0].dim() >= 2:
        return 2 * args[0].shape[1] * 4  # per-channel mean and inverse std, fp32
    return 0
