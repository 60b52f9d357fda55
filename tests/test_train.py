"""`archviz train` / `archviz evaluate` on the real Fashion-MNIST (CI installs Debian's dataset-fashion-mnist).

Runs are tiny (LeNet on 1,000-10,000 images, one thread) so the file stays well under
a minute and a half on two cores.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from archviz import zoo
from archviz.arch import load_arch
from archviz.errors import RunError
from archviz.train import checkpoint, data, loop, perf
from archviz.train.config import TrainConfig
from archviz.train.recipes import RECIPES, make_config

EPOCH_LINE = re.compile(r"^epoch (\d+), loss \d+\.\d{4}, train acc 0\.\d{3}, test acc 0\.\d{3}, time \d+\.\d sec, \d+ img/s$", re.M)
TINY = ["--limit-train", "1000", "--limit-test", "500", "--batch-size", "100", "--threads", "1"]


def metrics(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "metrics.json").read_text())


def numbers(records: list[dict]) -> list[tuple]:
    """What must not change between an interrupted-and-resumed run and an uninterrupted one."""
    return [(r["epoch"], r["loss"], r["train_acc"], r["test_acc"]) for r in records]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(path)["model"]


def calls_then(action, after: int, monkeypatch):
    """Make loop.train_step run ``action(loss)`` on its ``after``-th call (1-based)."""
    real, count = loop.train_step, {"n": 0}

    def step(*args, **kwargs):
        count["n"] += 1
        l, y_hat = real(*args, **kwargs)
        return (action(l) if count["n"] == after else l), y_hat

    monkeypatch.setattr(loop, "train_step", step)


@pytest.fixture(scope="module")
def lenet_bn_run(tmp_path_factory):
    """lenet_bn, one epoch on the first 10,000 training images, through the CLI."""
    from typer.testing import CliRunner

    from archviz.cli import app

    out = tmp_path_factory.mktemp("runs") / "lenet_bn"
    args = ["train", "lenet_bn", "--epochs", "1", "--limit-train", "10000", "--batch-size", "64", "--threads", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    return out, result


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """LeNet for 2 epochs on 1,000 images: the reference for the resume tests."""
    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    config = make_config("lenet", epochs=2, limit_train=1000, limit_test=500, batch_size=100, threads=1, out=str(out))
    loop.run(config)
    return out


def test_lenet_bn_one_epoch_on_10k_images(lenet_bn_run):
    out, result = lenet_bn_run
    assert result.exit_code == 0, result.stderr
    lines = EPOCH_LINE.findall(result.stdout)
    assert lines == ["1"]
    assert "best test acc" in result.stdout and "Traceback" not in result.stdout
    (record,) = metrics(out)
    assert set(record) == {"epoch", "loss", "train_acc", "test_acc", "seconds", "images_per_sec"}
    assert record["test_acc"] >= 0.75  # measured 0.795; chance is 0.1
    assert record["images_per_sec"] > 0 and record["seconds"] > 0
    assert (out / "metrics.csv").read_text().splitlines()[0] == "epoch,loss,train_acc,test_acc,seconds,images_per_sec"
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "lenet_bn" and config["limit_train"] == 10000 and config["resize"] == 28 and config["threads"] == 1
    svg = ET.parse(out / "learning_curve.svg").getroot()
    assert len(svg.findall("{http://www.w3.org/2000/svg}polyline")) == 3
    for name in ("last.pt", "best.pt"):
        state = checkpoint.load(out / name)
        assert state["epoch"] == 1 and state["config"]["arch"] == "lenet_bn"


def test_evaluate_per_class_and_confusion(lenet_bn_run, cli):
    out, _ = lenet_bn_run
    code, stdout, stderr = cli("evaluate", str(out), "--device", "cpu", "--format", "json")
    assert code == 0, stderr
    report = json.loads(stdout)
    matrix = torch.tensor(report["confusion"])
    assert matrix.shape == (10, 10) and int(matrix.sum()) == 10_000
    assert matrix.sum(dim=1).tolist() == [1000] * 10  # the test set has 1,000 images per class
    assert report["class_names"][0] == "T-shirt/top" and report["class_names"][9] == "Ankle boot"
    assert report["test_acc"] == pytest.approx(int(matrix.diag().sum()) / 10_000)
    # the same weights on the same images as the training run's last evaluation
    assert report["test_acc"] == pytest.approx(metrics(out)[0]["test_acc"], abs=0.002)
    assert [c["correct"] for c in report["per_class"]] == matrix.diag().tolist()
    code, table, _ = cli("evaluate", str(out / "last.pt"), "--device", "cpu")
    assert code == 0 and "Ankle boot" in table and "test acc" in table


def test_resume_gives_identical_metrics(uninterrupted, tmp_path, cli):
    out = tmp_path / "resumed"
    code, _, stderr = cli("train", "lenet", "--epochs", "1", *TINY, "--out", str(out))
    assert code == 0, stderr
    assert len(metrics(out)) == 1
    code, stdout, stderr = cli("train", "--resume", str(out), "--epochs", "2")
    assert code == 0, stderr
    assert EPOCH_LINE.findall(stdout) == ["2"]
    assert numbers(metrics(out)) == numbers(metrics(uninterrupted))
    expected = weights(uninterrupted / "last.pt")
    assert all(torch.equal(t, expected[k]) for k, t in weights(out / "last.pt").items())


def test_ctrl_c_mid_epoch_saves_and_resume_is_identical(uninterrupted, tmp_path, cli, monkeypatch):
    out = tmp_path / "interrupted"
    # Ctrl-C during step 13 = epoch 2, batch 3 (10 batches per epoch).
    calls_then(lambda l: os.kill(os.getpid(), signal.SIGINT) or l, 13, monkeypatch)
    code, stdout, stderr = cli("train", "lenet", "--epochs", "2", *TINY, "--out", str(out))
    assert code == 130, stderr
    assert "archviz train --resume" in stdout and "Traceback" not in stdout + stderr
    state = checkpoint.load(out / "last.pt")
    assert (state["epoch"], state["batch"]) == (1, 3)
    monkeypatch.undo()
    code, _, stderr = cli("train", "--resume", str(out))
    assert code == 0, stderr
    assert numbers(metrics(out)) == numbers(metrics(uninterrupted))
    expected = weights(uninterrupted / "last.pt")
    assert all(torch.equal(t, expected[k]) for k, t in weights(out / "last.pt").items())


def test_checkpoints_are_never_half_written(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    good = {"model": {"w": torch.arange(4.0)}, "epoch": 1}
    checkpoint.save(good, path)
    before = path.read_bytes()

    def dies_halfway(f, data):  # the disk fills while the checkpoint's bytes are written
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    from archviz import files

    monkeypatch.setattr(files, "_fill", dies_halfway)
    with pytest.raises(RunError, match=r"cannot write '.*last\.pt' \(No space left on device\); the previous file is unchanged\."):
        checkpoint.save({"model": {"w": torch.zeros(4)}, "epoch": 2}, path)
    assert path.read_bytes() == before
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.arange(4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left behind


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, cli, monkeypatch):
    out = tmp_path / "nan"
    calls_then(lambda l: l * float("nan"), 15, monkeypatch)  # epoch 2, batch 5
    code, stdout, stderr = cli("train", "lenet", "--epochs", "3", *TINY, "--out", str(out))
    assert code == 1
    assert "loss became NaN or infinite in epoch 2" in stderr and "still holds epoch 1" in stderr
    assert "Traceback" not in stdout + stderr and len(stderr.strip().splitlines()) == 1
    state = checkpoint.load(out / "last.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(t).all() for t in state["model"].values())
    assert [r["epoch"] for r in metrics(out)] == [1]


def test_out_of_memory_names_a_batch_size(tmp_path, cli, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "train_step", oom)
    monkeypatch.setattr(perf, "largest_batch", lambda *a, **k: 37)
    code, stdout, stderr = cli("train", "lenet", *TINY, "--out", str(tmp_path / "a"))
    assert code == 1 and "Traceback" not in stdout + stderr
    assert "out of memory" in stderr and "the cost model says batch size 37 fits" in stderr and "--batch-size 37" in stderr
    monkeypatch.setattr(perf, "largest_batch", lambda *a, **k: None)  # no cost model: halve
    code, _, stderr = cli("train", "lenet", *TINY, "--out", str(tmp_path / "b"))
    assert code == 1 and "try halving it: --batch-size 50" in stderr


@pytest.mark.slow
def test_largest_batch_comes_from_the_cost_model():
    pytest.importorskip("archviz.estimate.memory")
    from archviz.estimate.memory import StepSettings, predict_memory

    arch = load_arch("lenet")
    budget = predict_memory(arch, (64, 1, 28, 28), StepSettings.parse("adam", device="cpu")).peak_bytes
    assert perf.largest_batch(arch, (256, 1, 28, 28), budget, StepSettings.parse("adam")) == 64


def test_missing_data_lists_the_ways_to_get_it(tmp_path, cli, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "nothing")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ARCHVIZ_DATA", raising=False)
    code, stdout, stderr = cli("train", "lenet", "--out", str(tmp_path / "run"))
    assert code == 1 and "Traceback" not in stdout + stderr
    message = stderr.strip()
    assert len(message.splitlines()) == 1 and "Fashion-MNIST was not found" in message
    for way in ("apt install dataset-fashion-mnist", "--download", "--data-dir", "$ARCHVIZ_DATA"):
        assert way in message
    code, _, stderr = cli("train", "lenet", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run2"))
    assert code == 2 and "holds no Fashion-MNIST files" in stderr


def test_raw_idx_files_and_truncated_files(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for stem in data.FILES.values():
        with gzip.open(data.DEBIAN_DIR / f"{stem}.gz", "rb") as src, open(raw / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    from_raw = data.load_fashion_mnist(str(raw))
    from_gz = data.load_fashion_mnist(str(data.DEBIAN_DIR))
    assert from_raw.train_X.shape == (60000, 28, 28) and from_raw.train_X.dtype == torch.uint8
    assert torch.equal(from_raw.test_X, from_gz.test_X) and torch.equal(from_raw.train_y, from_gz.train_y)
    assert torch.bincount(from_raw.test_y).tolist() == [1000] * 10

    (raw / "t10k-labels-idx1-ubyte").write_bytes((raw / "t10k-labels-idx1-ubyte").read_bytes()[:5000])
    with pytest.raises(data.RunError, match="t10k-labels-idx1-ubyte is corrupt or truncated"):
        data.load_fashion_mnist(str(raw))
    gz = tmp_path / "gz"
    shutil.copytree(data.DEBIAN_DIR, gz)
    (gz / "t10k-images-idx3-ubyte.gz").write_bytes((gz / "t10k-images-idx3-ubyte.gz").read_bytes()[:20000])
    with pytest.raises(data.RunError, match="t10k-images-idx3-ubyte.gz is corrupt or truncated"):
        data.load_fashion_mnist(str(gz))


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["train", "lenett"], 2, "unknown architecture 'lenett'"),
        (["train", "lenet", "--lr", "-1"], 2, "--lr must be a positive finite number"),
        (["train", "lenet", "--lr", "nan"], 2, "--lr must be a positive finite number"),
        (["train", "lenet", "--batch-size", "0"], 2, "--batch-size must be a positive whole number"),
        (["train", "lenet", "--resize", "4"], 2, "--resize must be between 8 and 1024"),
        (["train", "lenet", "--optimizer", "rmsprop"], 2, "rmsprop"),
        (["train"], 2, "name the architecture to train"),
        (["train", "--resume", "/nonexistent/run"], 2, "no config.json there"),
    ],
)
def test_bad_usage_is_one_sentence(cli, args, code, words):
    exit_code, stdout, stderr = cli(*args)
    assert exit_code == code
    assert words in stderr and "Traceback" not in stdout + stderr


def test_out_is_checked_before_training(lenet_bn_run, tmp_path, cli):
    out, _ = lenet_bn_run
    code, _, stderr = cli("train", "lenet", "--out", str(out))
    assert code == 2 and "already holds a run" in stderr and f"--resume {out}" in stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, stderr = cli("train", "lenet", "--out", str(blocker / "run"))
    assert code == 2 and "cannot write to --out" in stderr
    code, _, stderr = cli("train", "--resume", str(out), "--lr", "0.5")
    assert code == 2 and "--lr cannot change when resuming" in stderr
    code, _, stderr = cli("train", "lenet", "--resume", str(out))
    assert code == 2 and "is a run of lenet_bn, not lenet" in stderr


def test_model_with_wrong_number_of_classes_is_refused(tmp_path, cli):
    spec = tmp_path / "net.yaml"
    spec.write_text("name: ten_or_not\ndefault_input: 1x1x28x28\nlayers:\n  - flatten\n  - linear: {out: 7}\n", encoding="utf-8")
    code, stdout, stderr = cli("train", str(spec), *TINY, "--out", str(tmp_path / "r"))
    assert code == 2 and "needs [2, 10]" in stderr and "Traceback" not in stdout + stderr


def test_a_per_pixel_model_is_refused_as_such(tmp_path, cli):
    code, stdout, stderr = cli("train", "unet", *TINY, "--out", str(tmp_path / "r"))
    assert code == 2 and "Traceback" not in stdout + stderr
    assert "unet outputs shape [2, 2, " in stderr and "scores for every pixel" in stderr and "train an image classifier" in stderr
    assert not (tmp_path / "r" / "last.pt").exists()


@pytest.mark.parametrize("name", [n for n in zoo.list_models() if n != "unet"])  # unet scores pixels, not images
def test_every_builtin_has_a_recipe_it_can_be_built_for(name):
    config = make_config(name, out="unused")
    assert name in RECIPES and isinstance(config, TrainConfig)
    arch = load_arch(name, config.params)
    trace = arch.trace((1, arch.default_input[1], config.resize, config.resize))
    assert trace.output_shape == (1, 10)


def test_epoch_order_is_seeded_and_shards_are_disjoint():
    assert torch.equal(data.epoch_order(1000, 0, 3), data.epoch_order(1000, 0, 3))
    assert not torch.equal(data.epoch_order(1000, 0, 3), data.epoch_order(1000, 0, 4))
    shards = [data.epoch_order(1001, 7, 0, world_size=2, rank=r) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 500
    assert len(set(torch.cat(shards).tolist())) == 1000
    assert data.num_batches(1001, 100) == 10  # a last batch of one image is dropped (batch norm)
    assert data.num_batches(1002, 100) == 11


def test_batches_are_normalised_and_resized_on_the_device():
    X = torch.full((5, 28, 28), 255, dtype=torch.uint8)
    y = torch.arange(5)
    (Xb, yb), (Xc, _) = list(data.batches(X, y, 3, 96, order=torch.tensor([4, 0, 2, 1, 3])))
    assert Xb.shape == (3, 1, 96, 96) and Xc.shape == (2, 1, 96, 96) and Xb.dtype == torch.float32
    assert yb.tolist() == [4, 0, 2]
    assert torch.allclose(Xb, torch.tensor((1 - data.MEAN) / data.STD))
