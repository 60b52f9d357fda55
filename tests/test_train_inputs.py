"""Issue 19: `archviz train` on any callable (channels and size from its first layer or --input), and the thread choice."""

from __future__ import annotations

import json
import random

import pytest

from archviz.errors import UsageError
from archviz.train import loop
from archviz.train.inputs import first_layer_input, parse_train_input
from archviz.train.recipes import make_config
from archviz.train.threads import pick_threads

QUICK = ["--epochs", "1", "--limit-train", "200", "--limit-test", "100", "--batch-size", "50", "--threads", "1"]


def test_parse_train_input():
    assert parse_train_input("1x28x28") == (1, 28)
    assert parse_train_input("8x3x96x96") == (3, 96)  # N is ignored: the batch is --batch-size
    for bad in ("28x28", "1x28x30", "1x0x0", "ax1x1"):
        with pytest.raises(UsageError, match=r"must be the square images the model takes, CxSxS"):
            parse_train_input(bad)


def test_first_layer_says_channels_and_for_a_linear_the_size():
    import usermodels

    assert first_layer_input(usermodels.tiny_cnn()) == (3, None)
    assert first_layer_input(usermodels.gray_cnn()) == (1, None)
    assert first_layer_input(usermodels.mlp()) == (1, 28)


@pytest.mark.parametrize(("arch", "channels", "resize"), [("usermodels:gray_cnn", 1, 28), ("usermodels:tiny_cnn", 3, 28), ("usermodels:mlp", 1, 28)])
def test_train_a_callable_with_1_or_3_channels(arch, channels, resize, cli, tmp_path):
    out = tmp_path / "run"
    extra = [] if arch.endswith("mlp") else ["--resize", "28"]
    code, stdout, stderr = cli("train", arch, *QUICK, *extra, "--out", str(out))
    assert code == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert (config["channels"], config["resize"]) == (channels, resize)
    assert json.loads((out / "metrics.json").read_text())[0]["epoch"] == 1


def test_input_option_sets_channels_and_size(cli, tmp_path):
    out = tmp_path / "run"
    code, _, stderr = cli("train", "usermodels:tiny_cnn", *QUICK, "--input", "3x16x16", "--out", str(out))
    assert code == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert (config["channels"], config["resize"]) == (3, 16)


def test_a_mismatch_is_one_sentence_before_any_data_is_loaded(cli, tmp_path, monkeypatch):
    from archviz.train import data

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded")

    monkeypatch.setattr(data, "load_fashion_mnist", no_data)
    monkeypatch.setattr(loop, "load_fashion_mnist", no_data)
    code, stdout, stderr = cli("train", "usermodels:tiny_cnn", *QUICK, "--input", "1x28x28", "--out", str(tmp_path / "run"))
    errors = [line for line in stderr.splitlines() if not line.endswith(" ...")]  # besides the "tracing X ..." sign of life
    assert code == 2 and stdout == "" and len(errors) == 1 and errors[0].startswith("archviz: error: usermodels:tiny_cnn cannot run")
    assert "layer '0' (Conv2d) expects 3 input channels but gets 1" in stderr
    assert "`archviz train` feeds it 1x28x28 images (Fashion-MNIST's gray channel repeated): give --input 3x28x28." in stderr
    assert not (tmp_path / "run").exists()
    code, _, stderr = cli("train", "usermodels:mlp", *QUICK, "--input", "1x32x32")
    assert code == 2 and "expects 784 input features but gets 1024" in stderr
    code, _, stderr = cli("train", "usermodels:mlp", *QUICK, "--input", "1x28x28", "--resize", "32")
    assert code == 2 and "--input 1x28x28 asks for 28x28 images but --resize 32 for 32x32; give one of them." in stderr


def test_a_timm_model_trains_at_the_size_it_was_made_for():
    from torch import nn

    from archviz.train.inputs import native_size

    model = nn.Linear(2, 2)
    assert native_size(model) is None
    model.pretrained_cfg = {"input_size": (3, 384, 384)}  # what timm sets on every model it creates
    assert native_size(model) == 384
    model.pretrained_cfg = {"input_size": (3, 224, 160)}
    assert native_size(model) is None


@pytest.mark.slow
def test_timm_callable_with_one_channel_gets_channels_and_size_from_the_model():
    import timm  # noqa: F401 - in the test extra

    config = make_config("timm:create_model", ["model_name=resnet10t", "in_chans=1", "num_classes=10"], threads=1, out="unused")
    assert (config.channels, config.resize) == (1, 176)  # resnet10t's pretrained_cfg: 3x176x176
    config = make_config("timm:create_model", ["model_name=swin_tiny_patch4_window7_224", "num_classes=10"], threads=1, out="unused")
    assert (config.channels, config.resize) == (3, 224)


def test_spec_channels_come_from_in_channels():
    config = make_config("resnet50", limit_train=10, limit_test=10, threads=1, out="unused")  # recipe: -p in_channels=1
    assert config.channels == 1 and config.resize == 96


# --- the thread count: an injected clock, so the choice is deterministic ---------------


class Script:
    """A fake machine: ``times[n]`` lists the seconds successive steps take at n threads (the last repeats)."""

    def __init__(self, times: dict[int, list[float]]):
        self.times, self.now, self.threads, self.calls = times, 0.0, None, {n: 0 for n in times}

    def set_threads(self, n: int) -> None:
        self.threads = n

    def step(self) -> None:
        seq = self.times[self.threads]
        self.now += seq[min(self.calls[self.threads], len(seq) - 1)]
        self.calls[self.threads] += 1

    def clock(self) -> float:
        return self.now


def test_more_threads_only_when_measured_faster():
    fast2 = Script({2: [0.010], 1: [0.012]})
    assert pick_threads(fast2.step, [1, 2], fast2.set_threads, fast2.clock)[0] == 2
    fast1 = Script({2: [0.012], 1: [0.010]})
    assert pick_threads(fast1.step, [1, 2], fast1.set_threads, fast1.clock)[0] == 1
    tie = Script({2: [2**-7], 1: [2**-7]})  # exact in binary: a true tie
    assert pick_threads(tie.step, [1, 2], tie.set_threads, tie.clock)[0] == 1


def test_a_lucky_step_under_load_does_not_win():
    """The issue's case: two threads ran one quick step between bursts of another process, but most of theirs were slow."""
    loaded = Script({2: [0.02, 0.02, 0.004, 0.05, 0.05, 0.05, 0.05, 0.05], 1: [0.008]})
    pick, medians = pick_threads(loaded.step, [1, 2], loaded.set_threads, loaded.clock)
    assert pick == 1 and medians[1] < medians[2]


def test_a_slow_step_decides_on_the_warm_up_round():
    big = Script({4: [0.5], 2: [1.0], 1: [1.5]})  # 3 s for one round: over the 2 s budget
    assert pick_threads(big.step, [1, 2, 4], big.set_threads, big.clock) == (4, {4: 0.5, 2: 1.0, 1: 1.5})
    assert big.calls == {4: 1, 2: 1, 1: 1}


def test_a_loaded_machine_slowing_every_core_still_measures_one_thread():
    """Issue 19, measured here: LeNet at 2 threads took 1.0 s per step on the loaded machine, 0.07 s at 1 thread."""
    loaded = Script({2: [1.0, 0.2, 0.6, 0.8], 1: [0.07, 0.05, 0.05, 0.05]})
    pick, medians = pick_threads(loaded.step, [1, 2], loaded.set_threads, loaded.clock)
    assert pick == 1 and medians[1] < medians[2]


def test_never_picks_a_count_measured_slower():
    rng = random.Random(19)
    for _ in range(300):
        script = Script({n: [rng.uniform(0.001, 0.03) for _ in range(8)] for n in (1, 2, 4)})
        pick, medians = pick_threads(script.step, [1, 2, 4], script.set_threads, script.clock)
        assert all(medians[pick] <= m for m in medians.values())
        assert all(script.calls[n] >= 2 for n in script.times)  # every count warmed up and measured


def test_measurement_stops_at_its_budget():
    slowish = Script({2: [0.2], 1: [0.2]})
    pick_threads(slowish.step, [1, 2], slowish.set_threads, slowish.clock, budget_s=1.0)
    assert slowish.now == pytest.approx(1.2)  # the warm-up round and two measured rounds (0.4 s each), not five


@pytest.mark.parametrize(
    ("callable_", "shape"),
    [
        ("usermodels:gray_cnn", [1, 1, 224, 224]),  # channels from the first conv
        ("usermodels:mlp", [1, 1, 28, 28]),  # a first Linear(784): 1x28x28
        ("usermodels:made_for_384", [1, 3, 384, 384]),  # timm's pretrained_cfg
        ("usermodels:tiny_cnn", [1, 3, 224, 224]),  # nothing more said: the default
    ],
)
def test_a_callable_is_traced_on_the_input_it_says_it_takes(cli, callable_, shape):
    code, out, err = cli("shapes", callable_, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["input_shape"] == shape
