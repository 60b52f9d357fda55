"""The notebook API: archviz.summary / cost / diagram, and that none of them changes the model."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import archviz
from archviz.errors import UsageError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleList([nn.Linear(8, 4), nn.Linear(8, 2)])

    def forward(self, x):
        h = self.features(x)
        return self.heads[0](h), self.heads[1](h)


def _state(model: nn.Module) -> dict:
    """Everything a user would notice if archviz changed it."""
    return {
        "tensors": {k: (v.device, v.dtype, v.clone()) for k, v in model.state_dict().items()},
        "params": [(id(p), p.requires_grad, p.grad) for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "hooks": [(dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks)) for m in model.modules()],
        "global_hooks": (dict(nn.modules.module._global_forward_hooks), dict(nn.modules.module._global_forward_pre_hooks)),
    }


def _same(before: dict, after: dict) -> bool:
    tensors_same = before["tensors"].keys() == after["tensors"].keys() and all(
        before["tensors"][k][:2] == after["tensors"][k][:2] and torch.equal(before["tensors"][k][2], after["tensors"][k][2]) for k in before["tensors"]
    )
    return tensors_same and all(before[k] == after[k] for k in ("params", "training", "hooks", "global_hooks"))


@pytest.fixture
def net():
    torch.manual_seed(0)
    model = Net().double()  # a dtype archviz must not change
    model.train()
    model.features[1].eval()  # mixed flags
    model.heads[1].weight.requires_grad_(False)
    calls = []
    model.features.register_forward_hook(lambda m, a, o: calls.append(1))
    model.calls = calls
    return model


def test_summary_of_a_module_in_hand(net):
    before = _state(net)
    s = archviz.summary(net, input_size=(2, 3, 16, 16), dtypes=[torch.float64])
    assert _same(before, _state(net)) and net.calls == [1]  # the user's hook ran once, on the meta copy, and is still registered
    assert s.total_params == 3 * 8 * 9 + 8 + 16 + 8 * 4 + 4 + 8 * 2 + 2
    assert s.trainable_params == s.total_params - 16
    assert s.macs == 2 * 8 * 16 * 16 * 27 + 2 * (8 * 4 + 8 * 2)
    assert [(b["name"], b["type"]) for b in s.blocks] == [("features", "Sequential"), ("heads", "ModuleList")]
    assert s.outputs == [{"name": "0", "shape": [2, 4], "dtype": "float64"}, {"name": "1", "shape": [2, 2], "dtype": "float64"}]
    assert s.to_dict()["inputs"] == [{"name": "input", "shape": [2, 3, 16, 16], "dtype": "float64"}]
    text = str(s)
    assert text.startswith("Net @ 2x3x16x16:float64") and "Outputs: 0 2x4:float64, 1 2x2:float64" in text
    assert "<table>" in s._repr_html_() and "<td style='text-align:left'>heads</td>" in s._repr_html_()


def test_summary_of_a_module_is_unchanged_with_compute(net):
    before = _state(net)
    s = archviz.summary(net, input_data=torch.randn(1, 3, 8, 8, dtype=torch.float64), compute=True)
    assert _same(before, _state(net))
    assert s.outputs[0]["shape"] == [1, 4]


def test_summary_equals_the_cli_json(cli):
    code, out, _ = cli("shapes", "vgg11", "-p", "ratio=8", "--depth", "2", "-f", "json")
    assert code == 0
    assert archviz.summary("vgg11", depth=2, ratio=8).to_dict() == json.loads(out)


def test_summary_input_forms_match():
    import usermodels

    model = usermodels.TwoInputs()
    by_size = archviz.summary(model, input_size=[(2, 8), (2, 6)])
    by_data = archviz.summary(model, input_data=(torch.zeros(2, 8), torch.zeros(2, 6)))
    by_dict = archviz.summary(model, input_data={"x": torch.zeros(2, 8), "y": torch.zeros(2, 6)})
    assert by_size.to_dict() == by_data.to_dict()
    assert by_dict.outputs == by_size.outputs and [i["name"] for i in by_dict.inputs] == ["x", "y"]
    tokens = archviz.summary(usermodels.TextClassifier(), input_size=(2, 7), dtypes=[torch.long])
    assert tokens.to_dict()["output_shape"] == [2, 2]


def test_a_module_needs_an_input_and_no_params(net):
    with pytest.raises(UsageError, match="a module in hand needs an input"):
        archviz.summary(net)
    with pytest.raises(UsageError, match="already built"):
        archviz.summary(net, input_size=(1, 3, 8, 8), ratio=3)
    with pytest.raises(UsageError, match="dtypes has 2 entries for 1 input"):
        archviz.summary(net, input_size=(1, 3, 8, 8), dtypes=[torch.float32, torch.int64])


def test_cost_equals_the_cli_json(cli):
    code, out, _ = cli("cost", "lenet", "--input", "16x1x28x28", "--optimizer", "adam", "-f", "json")
    assert code == 0
    report = archviz.cost("lenet", input_size=(16, 1, 28, 28), optimizer="adam")
    assert report.to_dict() == json.loads(out)
    assert report.macs == json.loads(out)["macs"] and "Peak:" in str(report) and "<table>" in report._repr_html_() and "<pre>" not in report._repr_html_()


def test_cost_of_a_module_in_hand_leaves_it_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    model.eval()
    before = _state(model)
    report = archviz.cost(model, input_size=(4, 1, 8, 8), optimizer="adam")
    assert _same(before, _state(model))
    assert report.total_params == 40 + 1450 and report.peak_bytes > 0


def test_diagram_shows_inline_and_saves(tmp_path, net):
    before = _state(net)
    d = archviz.diagram(net, input_size=(1, 3, 8, 8), dtypes=["float64"])
    assert _same(before, _state(net))
    assert '"@output:0"' in d.source and '"@output:1"' in d.source
    svg = d._repr_svg_()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    path = d.save(tmp_path / "net.svg")
    assert path.read_text() == svg
    assert d.save(tmp_path / "net.svg") == path  # archviz's own drawing of this net: replaced
    assert d.save(tmp_path / "net.dot").read_text() == '// archviz diagram "Net"\n' + d.source  # archviz's mark, then the source
    mine = tmp_path / "mine.svg"
    mine.write_text("<svg>my own drawing</svg>")
    with pytest.raises(UsageError, match="already exists and is not a file archviz recognises as its own"):
        d.save(mine)
    assert mine.read_text() == "<svg>my own drawing</svg>"
    assert d.save(mine, force=True).read_text() == svg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.svg", "net.dot", "net.svg"]  # no temporary files left


def test_diagram_hands_its_source_to_the_graphviz_package(net):
    d = archviz.diagram(net, input_size=(1, 3, 8, 8))
    source = d.graphviz()
    assert type(source).__module__.startswith("graphviz") and source.source == d.source
    # the same dot program on the same source; archviz's SVG adds only its mark (a comment line)
    assert source.pipe(format="svg").decode() == d._repr_svg_().replace('<!-- archviz diagram "Net" -->\n', "")


def test_import_archviz_does_not_import_torch_and_cost_is_the_api_function():
    code = (
        "import sys, archviz; assert 'torch' not in sys.modules; "
        "import archviz.estimate.units as u; assert archviz.estimate.units is u; "
        "from archviz import api; assert archviz.cost is api.cost and type(archviz).__name__ == 'module'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_load_arch_takes_a_module_in_hand(net):
    from archviz.arch import load_arch

    before = _state(net)
    trace = load_arch(net).trace("1x3x8x8:float64")
    assert _same(before, _state(net))
    assert trace.arch == "Net" and [o.shape for o in trace.outputs] == [(1, 4), (1, 2)]
    with pytest.raises(UsageError, match="cannot load a int as an architecture"):
        load_arch(3)


def test_a_float64_module_gets_float64_inputs_by_default(net):
    s = archviz.summary(net, input_size=(1, 3, 8, 8))
    assert s.inputs == [{"name": "input", "shape": [1, 3, 8, 8], "dtype": "float64"}]
    assert {o["dtype"] for o in s.outputs} == {"float64"}


def test_cost_of_a_two_input_module():
    import usermodels

    report = archviz.cost(usermodels.TwoInputs(), input_size=[(4, 8), (4, 6)])
    assert [i["shape"] for i in report.to_dict()["inputs"]] == [[4, 8], [4, 6]]
    assert report.to_dict()["memory"]["input_bytes"] == (4 * 8 + 4 * 6) * 4 + 4 * 8
