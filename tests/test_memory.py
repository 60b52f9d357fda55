"""Training-step memory: predictions against real CPU measurements, the budget search, sizes."""

import pytest
import torch
from torch import nn

from archviz.arch import Arch, load_arch
from archviz.cost.measure import measure_training_peak
from archviz.cost.memory import largest_batch, predict_memory
from archviz.cost.units import format_bytes, parse_size
from archviz.errors import RunError, UsageError

LENET_PARAM_BYTES = 4 * 44_426


@pytest.mark.parametrize(
    "name, shape, optimizer",
    [
        ("lenet", (8, 1, 28, 28), "sgd"),
        ("lenet", (32, 1, 28, 28), "adam"),
        ("lenet_bn", (16, 1, 28, 28), "momentum"),
        ("lenet_bn", (8, 1, 28, 28), "adamw"),
        ("nin", (2, 1, 64, 64), "sgd"),
    ],
)
def test_prediction_matches_a_measured_cpu_step(name, shape, optimizer):
    predicted = predict_memory(name, shape, optimizer)
    measured = measure_training_peak(name, shape, optimizer)
    assert predicted.peak_bytes == pytest.approx(measured.peak_bytes, rel=0.05)


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
    predicted = predict_memory(arch, shape, optimizer)
    measured = measure_training_peak(arch, shape, optimizer)
    assert predicted.peak_bytes == pytest.approx(measured.peak_bytes, rel=0.05)


def test_prediction_matches_the_training_loop_archviz_train_runs():
    """The simulated step mirrors archviz.train's: measure *that* loop, not ours."""
    loop = pytest.importorskip("archviz.train.loop")
    from torch.profiler import ProfilerActivity, profile, record_function

    from archviz.cost import measure

    arch, shape = load_arch("lenet_bn"), (16, 1, 28, 28)
    torch.manual_seed(0)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        net = arch.build(shape)
        loss = nn.CrossEntropyLoss()
        optimizer = make_optimizer("adam", net.parameters(), 0.01, 0.0, on_gpu=False)
        X, y = torch.randn(shape), torch.randint(0, 10, (shape[0],))
        state = loop.train_step(net, loss, optimizer, X, y)
        with record_function(measure._STEP):
            state = loop.train_step(net, loss, optimizer, X, y)
        del state
    peak, _ = measure._cpu_peak(prof)
    assert predict_memory(arch, shape, "adam").peak_bytes == pytest.approx(peak, rel=0.05)


def test_breakdown_by_hand():
    sgd = predict_memory("lenet", (8, 1, 28, 28), "sgd")
    assert sgd.params_bytes == sgd.grads_bytes == LENET_PARAM_BYTES
    assert sgd.optimizer_bytes == 0
    assert sgd.input_bytes == 8 * 28 * 28 * 4 + 8 * 8  # X in fp32, y in int64
    assert sum(sgd.peak_breakdown.values()) == sgd.peak_bytes
    momentum = predict_memory("lenet", (8, 1, 28, 28), "momentum")
    assert momentum.optimizer_bytes == LENET_PARAM_BYTES  # one buffer per parameter
    adam = predict_memory("lenet", (8, 1, 28, 28), "adam")
    assert adam.optimizer_bytes == 2 * LENET_PARAM_BYTES + 10 * 4  # two moments + a float32 step per tensor (CPU)
    # LeNet keeps for backward: each sigmoid's output, each pool's input and int64 indices, the linear inputs
    assert adam.activations_bytes == sgd.activations_bytes > 0
    assert sgd.inference_peak_bytes < sgd.peak_bytes
    bf16 = predict_memory("lenet", (8, 1, 28, 28), "sgd", dtype="bf16")
    assert bf16.params_bytes == LENET_PARAM_BYTES // 2


def test_cuda_rounds_blocks_and_uses_fused_adam():
    adam = predict_memory("lenet", (8, 1, 28, 28), "adam", device="cuda")
    sizes = [6 * 25, 6, 16 * 6 * 25, 16, 256 * 120, 120, 120 * 84, 84, 84 * 10, 10]  # parameter elements
    rounded = [-(-4 * n // 512) * 512 for n in sizes]
    assert adam.params_bytes == sum(rounded)
    # fused Adam keeps its step counters on the GPU: one 512-byte block each
    assert adam.optimizer_bytes == 2 * sum(rounded) + 512 * len(sizes)
    assert all(v % 512 == 0 for v in adam.peak_breakdown.values())
    # SGD on a GPU uses foreach kernels; momentum buffers are not counted twice
    momentum = predict_memory("lenet", (8, 1, 28, 28), "momentum", device="cuda")
    assert momentum.optimizer_bytes == sum(rounded)


def test_amp_keeps_fp32_weights_and_halves_activations():
    fp32 = predict_memory("lenet_bn", (64, 1, 28, 28), "sgd")
    amp = predict_memory("lenet_bn", (64, 1, 28, 28), "sgd", amp=True)
    assert amp.params_bytes == fp32.params_bytes
    assert amp.activations_bytes < 0.75 * fp32.activations_bytes


def test_eval_mode():
    estimate = predict_memory("lenet", (8, 1, 28, 28), mode="eval")
    assert estimate.peak_bytes == estimate.inference_peak_bytes
    assert estimate.grads_bytes == estimate.optimizer_bytes == 0
    assert estimate.peak_bytes > estimate.params_bytes + estimate.input_bytes


def test_largest_batch_is_the_edge_of_the_budget():
    budget = parse_size("8MiB")
    batch, estimate = largest_batch("lenet", None, budget, "adam", device="cpu")
    assert estimate.batch == batch and estimate.peak_bytes <= budget
    assert predict_memory("lenet", (batch + 1, 1, 28, 28), "adam").peak_bytes > budget
    assert 100 < batch < 1000
    assert largest_batch("lenet", None, 100_000, "sgd") is None  # LeNet's weights and grads alone are 347 KiB


def test_the_users_model_is_not_touched():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    before = [p.detach().clone() for p in net.parameters()]
    arch = Arch("mine", "callable", (2, 3, 32, 32), factory=lambda: net)
    estimate = predict_memory(arch, optimizer="adam")
    assert estimate.params_bytes == 4 * sum(p.numel() for p in net.parameters())
    assert all(p.device.type == "cpu" and p.grad is None for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_bad_choices_are_usage_errors():
    with pytest.raises(UsageError, match="optimizer 'rmsprop'"):
        predict_memory("lenet", optimizer="rmsprop")
    with pytest.raises(UsageError, match="dtype 'fp8'"):
        predict_memory("lenet", dtype="fp8")
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
    predicted = predict_memory(arch, optimizer="adam")
    measured = measure_training_peak(arch, optimizer="adam")
    assert predicted.peak_bytes == pytest.approx(measured.peak_bytes, rel=0.05)
