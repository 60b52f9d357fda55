"""Training-step memory: predictions against real CPU measurements, the budget search, sizes."""

import contextlib

import pytest
import torch
from torch import nn

from archviz.arch import Arch, load_arch
from archviz.errors import RunError, UsageError
from archviz.estimate.measure import measure_training_peak
from archviz.estimate.memory import largest_batch, predict_memory
from archviz.estimate.settings import StepSettings
from archviz.estimate.units import format_bytes, parse_size

LENET_PARAM_BYTES = 4 * 44_426


# Each setting runs in its own process: the ISA variables must be set before torch loads, and
# both the prediction and the measurement must obey them. What is asserted is prediction vs
# measurement on the same CPU, never a byte count that only one CPU produces.
# avx512_bf16: an AMX CPU capped to the AVX-512 BF16 kernels, i.e. the CPUs before Sapphire Rapids (Cooper Lake, Zen 4).
ISA_SETTINGS = {
    "native": {},
    "avx512_bf16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
ROWS = [
    ("lenet", (8, 1, 28, 28), "sgd", False),
    ("lenet", (32, 1, 28, 28), "adam", False),
    ("lenet_bn", (16, 1, 28, 28), "momentum", False),
    ("lenet_bn", (8, 1, 28, 28), "adamw", False),
    ("lenet_bn", (16, 1, 28, 28), "sgd", True),
    ("nin", (2, 1, 64, 64), "sgd", False),
]
# oneDNN's AMX kernels (workspace._amx_conv_*): checked where they run, held out from the rules' fitting. On an
# AVX-512 BF16 CPU without AMX this step is under-predicted by 7% (a known gap of the older bf16 rules, docs/limits.md).
AMX_ROWS = [("nin", (2, 1, 64, 64), "sgd", True)]
_COMPARE = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from archviz.estimate.measure import measure_training_peak
from archviz.estimate.memory import predict_memory
from archviz.estimate.settings import StepSettings
from archviz.estimate.workspace import CpuFacts
rows = []
for name, shape, opt, amp in json.loads(sys.argv[2]):
    rows.append([predict_memory(name, tuple(shape), StepSettings.parse(opt, amp=amp)).peak_bytes, measure_training_peak(name, tuple(shape), StepSettings.parse(opt, amp=amp)).peak_bytes])
facts = CpuFacts.here()
print(json.dumps({"rows": rows, "onednn": facts.onednn, "aten": facts.aten, "threads": facts.threads}))
"""


def _cpu_has(flag: str) -> bool:
    import platform

    from archviz.compat import cpu_isa_flags

    return platform.machine() in ("x86_64", "AMD64") and cpu_isa_flags()[flag]


def _avx2_cpu() -> bool:
    return _cpu_has("avx2")


def run_isolated(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    full = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    done = subprocess.run([sys.executable, "-c", code, *args], env=full, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("threads", [2, pytest.param(1, marks=pytest.mark.slow)])
@pytest.mark.parametrize("isa", sorted(ISA_SETTINGS))
def test_prediction_matches_a_measured_cpu_step_under_each_isa(isa, threads):
    import json

    needs = {"avx2": "avx2", "avx512_bf16": "avx512_bf16"}.get(isa)
    if needs and not _cpu_has(needs):
        pytest.skip(f"needs an x86-64 CPU with {needs} to emulate one")
    rows = ROWS + (AMX_ROWS if isa == "native" and _cpu_has("amx_tile") and _cpu_has("avx512_bf16") else [])
    out = json.loads(run_isolated(_COMPARE, str(threads), json.dumps(rows), env=ISA_SETTINGS[isa]).splitlines()[-1])
    assert out["threads"] == threads
    if isa == "avx2":  # both sides obeyed the variables
        assert out["onednn"] == "avx2" and out["aten"] == "AVX2"
    if isa == "avx512_bf16":
        assert out["onednn"] == "avx512_core_bf16"
    for (name, shape, optimizer, amp), (predicted, measured) in zip(rows, out["rows"], strict=True):
        assert predicted == pytest.approx(measured, rel=0.03), (name, shape, optimizer, amp)


def test_onednn_obeys_the_isa_cap_the_prediction_reads():
    """ONEDNN_VERBOSE prints the ISA oneDNN actually runs; CpuFacts must name the same one."""
    if not _avx2_cpu():
        pytest.skip("needs an x86-64 CPU with AVX2")
    code = (
        "import torch\nfrom archviz.estimate.workspace import CpuFacts\n"
        "torch.nn.functional.conv2d(torch.randn(2, 8, 8, 8), torch.randn(8, 8, 3, 3))\n"
        "print('facts', CpuFacts.here().onednn, CpuFacts.here().block)"
    )
    out = run_isolated(code, env={**ISA_SETTINGS["avx2"], "ONEDNN_VERBOSE": "1"})
    assert "isa:Intel AVX2" in out
    assert "facts avx2 8" in out


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, params, shape, optimizer",
    [
        ("resnet18", [], (2, 1, 96, 96), "adam"),
        ("googlenet", [], (2, 1, 96, 96), "momentum"),
        ("torchvision:mobilenet_v3_small", ["num_classes=10"], (2, 3, 96, 96), "adamw"),
    ],
)
def test_prediction_matches_on_larger_nets(name, params, shape, optimizer):
    arch = load_arch(name, params)
    predicted = predict_memory(arch, shape, StepSettings.parse(optimizer))
    measured = measure_training_peak(arch, shape, StepSettings.parse(optimizer))
    assert predicted.peak_bytes == pytest.approx(measured.peak_bytes, rel=0.03)


def test_train_and_the_simulation_run_one_step_function():
    """One step, one optimizer factory: `archviz train`'s loop and the simulation share them."""
    from archviz import step
    from archviz.estimate import measure, simulate
    from archviz.train import loop

    assert loop.train_step is step.train_step and simulate.train_step is step.train_step and measure.train_step is step.train_step
    assert loop.make_optimizer is step.make_optimizer and simulate.make_optimizer is step.make_optimizer


def test_prediction_matches_the_training_loop_archviz_train_runs():
    """Measure *that* loop (its nn.CrossEntropyLoss and its optimizer), not the benchmark's."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from archviz.estimate import measure
    from archviz.train import loop

    arch, shape = load_arch("lenet_bn"), (16, 1, 28, 28)
    torch.manual_seed(0)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        net = arch.build(shape)
        loss = nn.CrossEntropyLoss()
        optimizer = loop.make_optimizer("adam", net.parameters(), 0.01, 0.0, on_gpu=False)
        X, y = torch.randn(shape), torch.randint(0, 10, (shape[0],))
        state = loop.train_step(net, loss, optimizer, X, y)
        with record_function(measure._STEP):
            state = loop.train_step(net, loss, optimizer, X, y)
        del state
    peak = measure._cpu_peak(prof)
    assert predict_memory(arch, shape, StepSettings.parse("adam")).peak_bytes == pytest.approx(peak, rel=0.03)


def test_the_prediction_is_the_pytorch_tutorial_loops_peak():
    """The tutorial loop (forward, backward, step, zero_grad) frees the gradients before the next
    forward pass, as archviz's d2l-order step does: measure it and compare (the old step, which
    kept them through the forward pass, predicted googlenet +13% over this)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from archviz.estimate import measure

    arch, shape = load_arch("googlenet"), (2, 1, 96, 96)
    torch.manual_seed(0)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        net = arch.build(shape)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        X, y = torch.randn(shape), torch.randint(0, 10, (shape[0],))
        for i in range(2):
            with record_function(measure._STEP) if i else contextlib.nullcontext():
                l = nn.functional.cross_entropy(net(X), y)
                l.backward()
                optimizer.step()
                optimizer.zero_grad()
    peak = measure._cpu_peak(prof)
    estimate = predict_memory(arch, shape, StepSettings.parse("sgd"))
    assert estimate.peak_bytes == pytest.approx(peak, rel=0.03)
    assert estimate.step.startswith("2nd step of zero_grad(set_to_none) -> forward")


@pytest.mark.parametrize("kind", ["dict", "tuple", "list", "namedtuple"])
def test_any_output_structure_is_summed_into_the_loss(kind):
    arch = load_arch("usermodels:two_heads", [f"kind={kind}"])
    shape = (4, 3, 16, 16)
    estimate = predict_memory(arch, shape, StepSettings.parse("adam"))
    assert estimate.outputs == 2  # logits and the feature map; the dict's int64 count is not a loss term
    assert estimate.grads_bytes == 4 * (4 * 3 * 9 + 4 + 4 * 10 + 10)
    measured = measure_training_peak(arch, shape, StepSettings.parse("adam"))
    assert estimate.peak_bytes == pytest.approx(measured.peak_bytes, rel=0.03)


@pytest.mark.parametrize("model, params, buffers", [("frozen_cnn", 4 * (8 * 3 * 9 + 8 + 8 + 8 + 8 * 10 + 10), 4 * 16 + 8), ("bn_only", 0, 4 * 6 + 8)])
def test_no_trainable_parameters_means_no_gradients_and_no_optimizer(model, params, buffers):
    arch = load_arch(f"usermodels:{model}")
    estimate = predict_memory(arch, (4, 3, 16, 16), StepSettings.parse("adam"))
    assert estimate.grads_bytes == 0 and estimate.optimizer_bytes == 0
    assert estimate.params_bytes == params and estimate.buffers_bytes == buffers
    measured = measure_training_peak(arch, (4, 3, 16, 16), StepSettings.parse("adam"))
    assert estimate.peak_bytes == pytest.approx(measured.peak_bytes, rel=0.03)


def test_batch_norm_at_batch_1_in_train_mode_is_one_sentence():
    with pytest.raises(RunError, match=r"^layer 'fc\.2' normalises a single value per channel in train mode.*batch of 2 or more, or --mode eval\.$"):
        predict_memory("lenet_bn", (1, 1, 28, 28))
    assert predict_memory("lenet_bn", (1, 1, 28, 28), StepSettings.parse(mode="eval")).peak_bytes > 0


def test_breakdown_by_hand():
    sgd = predict_memory("lenet", (8, 1, 28, 28), StepSettings.parse("sgd"))
    assert sgd.params_bytes == sgd.grads_bytes == LENET_PARAM_BYTES
    assert sgd.optimizer_bytes == 0
    assert sgd.input_bytes == 8 * 28 * 28 * 4 + 8 * 8  # X in fp32, y in int64
    assert sum(sgd.peak_breakdown.values()) == sgd.peak_bytes
    momentum = predict_memory("lenet", (8, 1, 28, 28), StepSettings.parse("momentum"))
    assert momentum.optimizer_bytes == LENET_PARAM_BYTES  # one buffer per parameter
    adam = predict_memory("lenet", (8, 1, 28, 28), StepSettings.parse("adam"))
    assert adam.optimizer_bytes == 2 * LENET_PARAM_BYTES + 10 * 4  # two moments + a float32 step per tensor (CPU)
    # LeNet keeps for backward: each sigmoid's output, each pool's input and int64 indices, the linear inputs
    assert adam.activations_bytes == sgd.activations_bytes > 0
    assert sgd.inference_peak_bytes < sgd.peak_bytes
    bf16 = predict_memory("lenet", (8, 1, 28, 28), StepSettings.parse("sgd", dtype="bf16"))
    assert bf16.params_bytes == LENET_PARAM_BYTES // 2


def test_cuda_rounds_blocks_and_uses_fused_adam():
    adam = predict_memory("lenet", (8, 1, 28, 28), StepSettings.parse("adam", device="cuda"))
    sizes = [6 * 25, 6, 16 * 6 * 25, 16, 256 * 120, 120, 120 * 84, 84, 84 * 10, 10]  # parameter elements
    rounded = [-(-4 * n // 512) * 512 for n in sizes]
    assert adam.params_bytes == sum(rounded)
    # fused Adam keeps its step counters on the GPU: one 512-byte block each
    assert adam.optimizer_bytes == 2 * sum(rounded) + 512 * len(sizes)
    assert all(v % 512 == 0 for v in adam.peak_breakdown.values())
    # SGD on a GPU uses foreach kernels; momentum buffers are not counted twice
    momentum = predict_memory("lenet", (8, 1, 28, 28), StepSettings.parse("momentum", device="cuda"))
    assert momentum.optimizer_bytes == sum(rounded)


def test_amp_keeps_fp32_weights_and_halves_activations():
    fp32 = predict_memory("lenet_bn", (64, 1, 28, 28), StepSettings.parse("sgd"))
    amp = predict_memory("lenet_bn", (64, 1, 28, 28), StepSettings.parse("sgd", amp=True))
    assert amp.params_bytes == fp32.params_bytes
    assert amp.activations_bytes < 0.75 * fp32.activations_bytes


def test_eval_mode():
    estimate = predict_memory("lenet", (8, 1, 28, 28), StepSettings.parse(mode="eval"))
    assert estimate.peak_bytes == estimate.inference_peak_bytes
    assert estimate.grads_bytes == estimate.optimizer_bytes == 0
    assert estimate.peak_bytes > estimate.params_bytes + estimate.input_bytes


def test_largest_batch_is_the_edge_of_the_budget():
    budget = parse_size("8MiB")
    batch, estimate = largest_batch("lenet", None, budget, StepSettings.parse("adam", device="cpu"))
    assert estimate.batch == batch and estimate.peak_bytes <= budget
    assert predict_memory("lenet", (batch + 1, 1, 28, 28), StepSettings.parse("adam")).peak_bytes > budget
    assert 100 < batch < 1000
    assert largest_batch("lenet", None, 100_000, StepSettings.parse("sgd")) is None  # LeNet's weights and grads alone are 347 KiB


def test_the_users_model_is_not_touched():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    before = [p.detach().clone() for p in net.parameters()]
    arch = Arch("mine", "callable", (2, 3, 32, 32), factory=lambda: net)
    estimate = predict_memory(arch, settings=StepSettings.parse("adam"))
    assert estimate.params_bytes == 4 * sum(p.numel() for p in net.parameters())
    assert all(p.device.type == "cpu" and p.grad is None for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_bad_choices_are_usage_errors():
    with pytest.raises(UsageError, match="optimizer 'rmsprop'"):
        StepSettings.parse(optimizer="rmsprop")
    with pytest.raises(UsageError, match="dtype 'fp8'"):
        StepSettings.parse(dtype="fp8")
    with pytest.raises(RunError, match="cannot run"):
        predict_memory("lenet", (1, 1, 8, 8))


@pytest.mark.parametrize(
    "text, size",
    [("80GiB", 80 * 2**30), ("512MB", 512 * 10**6), ("1.5 GiB", 3 * 2**29), ("4096", 4096), ("64kib", 65536), ("2TB", 2 * 10**12)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GiB", "80G", "12 parsecs", "-1GiB", "0"])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError):
        parse_size(text)


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_bytes(80 * 2**30) == "80.0 GiB"
    assert format_bytes(1023.9 * 2**20) == "1024 MiB"


class TinyAttention(nn.Module):
    """Self-attention over 64 tokens: the math path would keep a 4 x 4 x 64 x 64 attention matrix."""

    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(32, 4, batch_first=True)
        self.head = nn.Linear(32, 10)

    def forward(self, X):
        Y, _ = self.attention(X, X, X, need_weights=False)
        return self.head(Y.mean(1))


def test_attention_is_simulated_with_the_fused_kernel():
    arch = Arch("tiny_attention", "callable", (8, 64, 32), factory=TinyAttention)
    assert arch.trace().flops > 2 * 8 * 64 * 64 * 32 * 2  # QK^T and AV are counted
    predicted = predict_memory(arch, settings=StepSettings.parse("adam"))
    measured = measure_training_peak(arch, settings=StepSettings.parse("adam"))
    assert predicted.peak_bytes == pytest.approx(measured.peak_bytes, rel=0.05)
