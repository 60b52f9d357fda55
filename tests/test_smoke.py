"""One run of every command, with real values: the version-sensitive surface.

CI runs the whole suite at the newest versions pyproject.toml allows, and at the lowest
(``scripts/setup --test --lowest``) only what an upgrade can break: these runs, the compat
smoke tests, the memory predictions and one launch of the elastic launcher (``pytest -m
lowest``; the list is in tests/conftest.py).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import yaml

TINY = ["--limit-train", "512", "--limit-test", "256", "--batch-size", "64", "--threads", "1", "--device", "cpu"]


def test_list(cli):
    code, out, err = cli("list", "--format", "json")
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["lenet"]["params"] == 44_426 and rows["googlenet"]["params"] == 5_977_530


def test_shapes_of_a_spec_and_of_a_torch_model(cli):
    code, out, err = cli("shapes", "vgg11", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["total_params"] == 128_806_154
    assert [b["output_shape"] for b in report["blocks"]][-1] == [1, 10]
    code, out, err = cli("shapes", "torchvision:resnet18", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["total_params"] == 11_689_512


def test_cost(cli):
    code, out, err = cli("cost", "lenet", "--input", "4x1x28x28", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    # LeNet's MACs per image (no padding): conv1 24*24*6*(5*5*1) + conv2 8*8*16*(5*5*6) + linear 256*120 + 120*84 + 84*10
    assert report["macs"] == 4 * (86_400 + 153_600 + 30_720 + 10_080 + 840) and report["flops"] == 2 * report["macs"]
    assert report["memory"]["params_bytes"] == 44_426 * 4 and report["memory"]["peak_bytes"] > report["memory"]["params_bytes"]


def test_compare(cli):
    code, out, err = cli("compare", "lenet", "lenet_bn", "--format", "json")
    assert code == 0, err
    rows = {row["arch"]: row for row in json.loads(out)["archs"]}
    assert rows["lenet"]["total_params"] == 44_426 and rows["lenet"]["macs"] == 281_640
    # batch norm adds a scale and a shift per channel: 2 * (6 + 16 + 120 + 84)
    assert rows["lenet_bn"]["total_params"] == 44_426 + 2 * (6 + 16 + 120 + 84)


def test_diagram(cli, tmp_path):
    target = tmp_path / "lenet.svg"
    code, _, err = cli("diagram", "lenet", "-o", str(target))
    assert code == 0, err
    texts = "".join(t.text or "" for t in ET.parse(target).iter("{http://www.w3.org/2000/svg}text"))
    assert "Conv2d" in texts and "Linear" in texts


def test_gallery(cli, tmp_path):
    code, _, err = cli("gallery", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / "lenet.svg").stat().st_size > 1000 and (tmp_path / "googlenet_detailed.svg").exists()


def test_spec_round_trips_through_a_file(cli, tmp_path):
    code, out, err = cli("spec", "lenet")
    assert code == 0, err
    assert yaml.safe_load(out)["name"] == "lenet"
    (tmp_path / "mine.yaml").write_text(out)
    code, out, err = cli("shapes", str(tmp_path / "mine.yaml"), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["total_params"] == 44_426


def test_train_then_evaluate(cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli("train", "lenet", "--epochs", "1", *TINY, "--out", str(run))
    assert code == 0, err
    (epoch,) = json.loads((run / "metrics.json").read_text())
    assert epoch["epoch"] == 1 and 0.0 < epoch["test_acc"] <= 1.0
    code, out, err = cli("evaluate", str(run), "--device", "cpu", "--limit-test", "256", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    correct = sum(report["confusion"][k][k] for k in range(10))
    assert sum(map(sum, report["confusion"])) == 256 and report["test_acc"] == pytest.approx(correct / 256, abs=1e-4)
    assert report["test_acc"] == pytest.approx(epoch["test_acc"], abs=1e-4)  # the same weights on the same 256 images
