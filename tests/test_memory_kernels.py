"""Memory rules for what CPU kernels allocate and the meta device does not show (issue 19).

Prediction against a real step measured in a subprocess (the ISA variables must be set before
torch loads), under the CPU's own ISA and under AVX2, never a byte count of one CPU. The models
are the benchmark's (benchmarks/kernel_models.py), at smaller sizes.
"""

import json
from pathlib import Path

import pytest
import torch

from archviz.estimate import workspace
from archviz.estimate.memory import predict_memory
from tests.test_memory import ISA_SETTINGS, _avx2_cpu, run_isolated

BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")

# (model, -p params, inputs, optimizer, amp)
ROWS = [
    ("kernel_models:MaskMLP", [], "64x64", "sgd", False),  # g * (x > 0): bool -> float copies
    ("kernel_models:TransposedSoftmax", [], "8x48x32", "sgd", False),  # softmax on a non-contiguous tensor
    ("kernel_models:EinsumUpsample", [], "2x3x32x32", "sgd", False),  # conv backward copies a channels-last gradient
    ("kernel_models:LSTMClassifier", [], "4x16:int64", "sgd", False),  # oneDNN's LSTM: workspace and scratch
    ("kernel_models:BiLSTMTagger", ["hidden=48"], "4x12:int64", "adam", False),
    ("kernel_models:NHWCBlock", [], "2x3x48x48", "adamw", False),  # depthwise 5x5 on channels-last strides: the padded buffer
    ("kernel_models:LeakyWhere", [], "64x48", "momentum", False),
    ("kernel_models:TwoInputs", [], "2x3x16x16+2x16", "sgd", False),
]
AMP_ROWS = [("kernel_models:NHWCBlock", ["channels=16"], "2x3x48x48", "sgd", True)]

_COMPARE = """
import contextlib, json, sys, torch
sys.path.insert(0, sys.argv[3])
torch.set_num_threads(int(sys.argv[1]))
from torch.profiler import ProfilerActivity, profile, record_function
from archviz.arch import load_arch
from archviz.estimate.measure import _STEP, _cpu_peak
from archviz.estimate.memory import StepSettings, predict_memory
from archviz.estimate.simulate import simulated_loss
from archviz.step import make_optimizer, train_step

def measure(arch, specs, optimizer, amp):
    torch.manual_seed(0)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        net = arch.build(tuple(specs[0].shape)).train()
        X = [torch.randint(0, 16, s.shape) if s.dtype == "int64" else torch.randn(s.shape) for s in specs]
        y = torch.randint(0, 10, (specs[0].shape[0],))
        opt = make_optimizer(optimizer, list(net.parameters()))
        autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp else contextlib.nullcontext
        state = train_step(net, simulated_loss, opt, X, y, autocast)
        with record_function(_STEP):
            state = train_step(net, simulated_loss, opt, X, y, autocast)
        del state
    return _cpu_peak(prof)

rows = []
for name, params, text, optimizer, amp in json.loads(sys.argv[2]):
    arch = load_arch(name, params)
    inputs = text.split("+") if "+" in text else text
    specs = list(arch.input_specs(inputs))
    predicted = predict_memory(arch, settings=StepSettings.parse(optimizer, amp=amp), trace=arch.trace(inputs)).peak_bytes
    rows.append([predicted, measure(arch, specs, optimizer, amp)])
print(json.dumps(rows))
"""


def _compare(isa: str, threads: int, rows: list) -> list:
    if isa == "avx2" and not _avx2_cpu():
        pytest.skip("needs an x86-64 CPU with AVX2 to emulate one")
    return json.loads(run_isolated(_COMPARE, str(threads), json.dumps(rows), BENCHMARKS, env=ISA_SETTINGS[isa]).splitlines()[-1])


@pytest.mark.parametrize("threads", [2, pytest.param(1, marks=pytest.mark.slow)])
@pytest.mark.parametrize("isa", sorted(ISA_SETTINGS))
def test_kernel_allocations_are_predicted_under_each_isa(isa, threads):
    for row, (predicted, measured) in zip(ROWS, _compare(isa, threads, ROWS), strict=True):
        assert predicted == pytest.approx(measured, rel=0.03), row


@pytest.mark.slow
def test_bf16_channels_last_depthwise_under_autocast():
    if not workspace.CpuFacts.here().native_bf16:
        pytest.skip("the bf16 channels-last depthwise rule is for CPUs with native bf16 (AVX-512 BF16)")
    for row, (predicted, measured) in zip(AMP_ROWS, _compare("native", 2, AMP_ROWS), strict=True):
        assert predicted == pytest.approx(measured, rel=0.03), row


def test_a_custom_autograd_function_is_named_with_its_margin(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)
    estimate = predict_memory("kernel_models:CustomFunction", (32, 64))
    assert list(estimate.unseen) == ["_Square"]
    assert estimate.unseen["_Square"] == 32 * 512 * 4  # what one call saves for backward: its fp32 input
    assert estimate.peak_with_margin_bytes == estimate.peak_bytes + 32 * 512 * 4
    assert len(estimate.warnings) == 1 and estimate.warnings[0].startswith("custom autograd.Function _Square: ")
    assert "64.0 KiB" in estimate.warnings[0] and estimate.warnings[0] in estimate.kernel_rules
    plain = predict_memory("kernel_models:MaskMLP", (32, 64))
    assert plain.unseen == {} and plain.warnings == []


def test_depthwise_channels_last_backward_buffer_follows_the_block():
    """The padded weight-gradient buffer: groups x block x block x k x k, whatever the batch or image size."""

    def scratch(block: int, batch: int, size: int) -> int:
        facts = workspace.CpuFacts("AVX512" if block == 16 else "AVX2", "avx512_core" if block == 16 else "avx2", 1, False)
        x = torch.empty(batch, 64, size, size, device="meta").contiguous(memory_format=torch.channels_last)
        grad = torch.empty(batch, 64, size, size, device="meta").contiguous(memory_format=torch.channels_last)
        w = torch.empty(64, 1, 7, 7, device="meta")
        args = (grad, x, w, [64], [1, 1], [3, 3], [1, 1], False, [0, 0], 64, [True, True, True])
        return workspace._conv_backward(args, facts)

    for block in (16, 8):
        expected = 4 * 64 * block * block * 49 + 4 * 64 * 49 + 4 * 64  # padded buffer, plain weights, bias gradient
        assert scratch(block, 2, 14) == scratch(block, 8, 28) == expected


def test_onednn_isa_reports_amx_as_onednn_decides_it(monkeypatch):
    from archviz import compat

    flags = {"avx2": True, "avx512": True, "avx512_bf16": True, "amx_tile": True, "amx_fp16": False}
    monkeypatch.setattr(compat, "cpu_isa_flags", lambda: flags)
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(var, raising=False)
    assert workspace.onednn_isa() == "avx10_1_512_amx"
    flags["amx_fp16"] = True
    assert workspace.onednn_isa() == "avx10_1_512_amx_fp16"
    for cap, isa in (("AVX512_CORE_AMX", "avx10_1_512_amx"), ("AVX512_CORE_BF16", "avx512_core_bf16"), ("AVX2", "avx2")):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert workspace.onednn_isa() == isa
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    flags.update(amx_tile=False, amx_fp16=False)
    assert workspace.onednn_isa() == "avx512_core_bf16"


def test_amx_backward_weights_scratchpad_follows_onednn_buffers():
    """lenet_bn's second convolution (x 16x6x12x12 bf16, 5x5, 16 outputs): measured 70,360 bytes with 1 thread and
    122,672 with 2 (the batch split in two: a second transposed input, output gradient and fp32 weight gradient)."""
    x = torch.empty(16, 6, 12, 12, dtype=torch.bfloat16, device="meta")

    def scratch(threads: int) -> int:
        facts = workspace.CpuFacts("AVX512", "avx10_1_512_amx", threads, True)
        return workspace._amx_bwd_w_scratchpad(x, 16, 5, 5, (1, 1), (0, 0), 8, 8, True, facts)

    assert abs(scratch(1) - 70_360) <= 64 and abs(scratch(2) - 122_672) <= 64


def test_promotion_copies_only_inputs_of_another_dtype():
    f = torch.empty(16, 32, device="meta")
    mask = torch.empty(16, 32, dtype=torch.bool, device="meta")
    half = torch.empty(16, 32, dtype=torch.bfloat16, device="meta")
    assert workspace._promotion_copies("mul", (f, mask)) == 16 * 32 * 4
    assert workspace._promotion_copies("add", (half, f)) == 16 * 32 * 4
    assert workspace._promotion_copies("mul", (f, f)) == 0
    assert workspace._promotion_copies("mul", (f, torch.tensor(2.0, device="meta"))) == 0  # a 0-dim scalar is not copied
    assert workspace._promotion_copies("where", (mask, f, f)) == 0  # the condition stays bool


def test_lstm_workspace_matches_the_kernel():
    x, w_ih, w_hh = torch.randn(12, 3, 20), torch.randn(4 * 48, 20), torch.randn(4 * 48, 48)
    b, h = torch.zeros(4 * 48), torch.zeros(3, 48)
    kept = torch.ops.aten.mkldnn_rnn_layer(x, w_ih, w_hh, b, b, h, h, False, [], 2, 48, 1, True, False, False, True)[3]
    assert kept.numel() == workspace.lstm_workspace_bytes(12, 3, 20, 48)
