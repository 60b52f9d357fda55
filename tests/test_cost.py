"""FLOPs, receptive fields, the `cost` and `compare` commands: hand-computed values and published oracles."""

import json

import pytest
import torch
from torch import nn

from archviz.arch import load_arch
from archviz.estimate.flops import training_flops_per_image, uncounted_ops
from archviz.estimate.receptive import block_fields, receptive_fields
from archviz.estimate.units import format_bytes
from archviz.trace.from_module import trace_module

ONE_CONV = """
name: one_conv
default_input: 1x3x32x32
params: {in_channels: 3, num_classes: 10}
layers:
  - conv: {out: 8, kernel: 3, stride: 2, padding: 1}
  - conv: {out: 4, kernel: 3, dilation: 2}
  - maxpool: {kernel: 2, stride: 2}
"""


@pytest.fixture
def one_conv(tmp_path):
    path = tmp_path / "one_conv.yaml"
    path.write_text(ONE_CONV)
    return load_arch(str(path))


def test_single_layers_by_hand(one_conv):
    trace = one_conv.trace()
    conv1, conv2, pool = (trace.node(p) for p in ("0", "1", "2"))
    # conv 3->8, 3x3, stride 2, pad 1 on 32x32: 16x16 outputs, each 3*3*3 multiply-adds per output channel
    assert conv1.output_shape == (1, 8, 16, 16)
    assert conv1.macs == 8 * 16 * 16 * 3 * 3 * 3 == 55_296 and conv1.flops == 2 * 55_296
    # dilated 3x3 (effective 5x5), no padding: 16 - 4 = 12
    assert conv2.output_shape == (1, 4, 12, 12) and conv2.macs == 4 * 12 * 12 * 8 * 9
    assert pool.macs == 0
    fields = receptive_fields(trace)
    # size r' = r + (k_eff - 1) * j, jump j' = j * s, start s' = s + ((k_eff - 1) / 2 - p) * j
    assert (fields["0"].size, fields["0"].jump, fields["0"].start) == ((3, 3), (2, 2), (0.5, 0.5))
    assert (fields["1"].size, fields["1"].jump, fields["1"].start) == ((11, 11), (2, 2), (4.5, 4.5))
    assert (fields["2"].size, fields["2"].jump, fields["2"].start) == ((13, 13), (4, 4), (5.5, 5.5))


def test_single_conv_module_trace_agrees():
    arch = load_arch("torch.nn:Conv2d", ["in_channels=3", "out_channels=8", "kernel_size=3", "stride=2", "padding=1"])
    trace = arch.trace((2, 3, 32, 32))
    assert trace.flops // 2 == 2 * 55_296
    field = block_fields(trace)[""]
    assert (field.size, field.jump, field.start) == ((3, 3), (2, 2), (0.5, 0.5))


def test_lenet_by_hand():
    trace = load_arch("lenet").trace()
    # conv block: 6 x 24 x 24 outputs x 25 taps + 16 x 8 x 8 outputs x (6 x 25) taps
    assert trace.node("conv").macs == 6 * 24 * 24 * 25 + 16 * 8 * 8 * 6 * 25 == 240_000
    assert trace.node("fc").macs == 256 * 120 + 120 * 84 + 84 * 10 == 41_640
    assert trace.flops == 2 * 281_640
    assert training_flops_per_image(trace) == 3 * 2 * 281_640
    fields = receptive_fields(trace)
    # conv 5 -> 5; pool 2/2 -> 6, jump 2; conv 5 -> 6 + 4*2 = 14; pool 2/2 -> 14 + 2 = 16, jump 4
    assert [fields[p].size[0] for p in ("conv.0", "conv.2", "conv.3", "conv.5")] == [5, 6, 14, 16]
    assert [fields[p].jump[0] for p in ("conv.0", "conv.2", "conv.3", "conv.5")] == [1, 2, 2, 4]
    assert fields["conv.5"].start == (8.0, 8.0)
    assert fields["fc.1"].whole_input and fields["fc.1"].size == (28, 28)  # after flatten + linear: all of it


def test_receptive_field_through_inception_and_residual():
    googlenet = load_arch("googlenet").trace()
    fields = block_fields(googlenet)
    b2 = fields["b2"]
    # the widest Inception path is 1x1 then 5x5 (pad 2): +4 jumps; the concat takes it
    assert fields["b3.0"].size[0] == b2.size[0] + 4 * b2.jump[0]
    assert fields["b3.0"].jump == b2.jump
    resnet = block_fields(load_arch("resnet18").trace())
    assert resnet["b1"].size == (11, 11) and resnet["b1"].jump == (4, 4)
    # a basic block adds two 3x3 convs; the add keeps the body's (wider) field over the identity
    assert resnet["b2.0"].size[0] == 11 + 2 * 2 * 4
    # torchvision's ResNet-18: the well-known 435-pixel field at layer4, jump 32
    tv = block_fields(load_arch("torchvision:resnet18").trace())
    assert tv["layer4"].size == (435, 435) and tv["layer4"].jump == (32, 32)
    assert tv["fc"].whole_input


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "densenet121", "mobilenet_v3_small", "efficientnet_b0", "vit_b_16"])
def test_macs_match_torchvision_ops(name):
    from torchvision.models import get_model_weights

    published = get_model_weights(name).DEFAULT.meta["_ops"]  # GMACs at 3x224x224
    trace = load_arch(f"torchvision:{name}").trace((1, 3, 224, 224))
    assert trace.flops / 2e9 == pytest.approx(published, rel=0.01)
    # Everything that did arithmetic was counted, attention included: nothing is listed as uncounted.
    assert uncounted_ops(trace) == []


def test_attention_flops_sit_on_the_function_op():
    trace = load_arch("torchvision:vit_b_16").trace((1, 3, 224, 224))
    attention = [op for op in trace.ops if op.type == "multi_head_attention_forward"]
    assert len(attention) == 12
    # q/k/v and output projections (4 x 197 x 768^2) plus QK^T and AV (2 x 197^2 x 768), as MACs x 2.
    assert {op.flops for op in attention} == {2 * (4 * 197 * 768 * 768 + 2 * 197 * 197 * 768)}


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, X):
        return X * self.gamma


class Distances(nn.Module):
    """A leaf that runs a matrix product the FLOP counter has no formula for (cdist)."""

    def forward(self, X):
        return torch.cdist(X, X)


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.scale = Scale()
        self.dist = Distances()

    def forward(self, X):
        Y = torch.cumsum(self.scale(self.conv(X)), dim=1)
        return self.dist(Y.flatten(2)), torch.cdist(Y.flatten(2), Y.flatten(2))


def test_only_ops_that_hide_a_matrix_product_are_listed():
    """Issue 19: zero-FLOP ops by the convention (a scale, cumsum, reshapes) are not listed; cdist is, as a module and as a function."""
    trace = trace_module(Odd(), (1, 3, 8, 8), "odd")
    assert uncounted_ops(trace) == ["dist (Distances)", ":cdist (cdist)"]
    assert trace.flops == 2 * 4 * 6 * 6 * 27  # the conv is still counted
    assert uncounted_ops(load_arch("googlenet").trace()) == []


class LayerNorm2d(nn.LayerNorm):
    """timm's: a LayerNorm over channels of an NxCxHxW tensor."""

    def forward(self, X):
        return super().forward(X.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DropPath(nn.Module):
    def forward(self, X):
        return X


class ZeroFlopOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.norm = LayerNorm2d(4)
        self.drop_path = DropPath()
        self.gamma = nn.Parameter(torch.ones(4, 1, 1))

    def forward(self, X):
        Y = self.drop_path(self.norm(self.conv(X))) * self.gamma
        return (Y.reshape_as(X) + X).type_as(X)


def test_zero_flop_ops_of_timm_models_are_not_listed():
    trace = trace_module(ZeroFlopOps(), (2, 4, 5, 5), "zero")
    types = {op.type for op in trace.ops}
    assert {"reshape_as", "type_as", "LayerNorm2d", "DropPath"} <= types  # they ran and were recorded
    assert uncounted_ops(trace) == []
    assert trace.flops == 2 * 2 * 4 * 25 * 4


class TokenBlock(nn.Module):
    def forward(self, X, token):
        return torch.cat([token, X], dim=1) @ torch.ones(X.shape[-1], 3)


class ClassToken(nn.Module):
    """CaiT's pattern: a view of a parameter, made under no_grad, passed to a submodule. The view requires
    grad but has no grad_fn, which FlopCounterMode's module tracker asserts on (issue 19)."""

    def __init__(self):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, 8))
        self.block = TokenBlock()

    def forward(self, X):
        return self.block(X, self.token.expand(X.shape[0], -1, -1))


def test_flop_counter_module_tracker_trips_under_no_grad_but_the_trace_does_not():
    from torch.utils.flop_counter import FlopCounterMode

    with pytest.raises(AssertionError, match="Expected gradient function to be set"), torch.no_grad(), FlopCounterMode(display=False):
        ClassToken()(torch.zeros(2, 5, 8))  # the failure archviz works around, still there in torch
    for compute in (False, True):
        trace = trace_module(ClassToken(), (2, 5, 8), "token", compute=compute)
        assert trace.output_shape == (2, 6, 3)
        assert trace.flops == 2 * 2 * 6 * 8 * 3


@pytest.mark.slow
def test_timm_cait_traces():
    import timm  # noqa: F401 - in the test extra: a missing timm fails here, it is not skipped

    trace = load_arch("timm:create_model", ["model_name=cait_xxs24_224"]).trace((1, 3, 224, 224))
    assert trace.output_shape == (1, 1000)
    assert trace.total_params == 11_956_264
    assert uncounted_ops(trace) == []


def test_cost_json_contract(cli):
    code, out, err = cli("cost", "lenet", "--input", "8x1x28x28", "--format", "json")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["total_params"] == 44_426
    assert report["macs"] == 8 * 281_640 and report["flops"] == 2 * report["macs"]
    assert report["training_flops_per_image"] == 3 * 2 * 281_640
    memory = report["memory"]
    for key in ("params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "peak_bytes", "inference_peak_bytes"):
        assert isinstance(memory[key], int), key
    assert memory["params_bytes"] == 4 * 44_426 and memory["grads_bytes"] == 4 * 44_426 and memory["optimizer_bytes"] == 0
    assert sum(memory["peak_breakdown"].values()) == memory["peak_bytes"]
    assert memory["inference_peak_bytes"] < memory["peak_bytes"]
    blocks = report["blocks"]
    assert [b["name"] for b in blocks] == ["conv", "fc"]
    for b in blocks:
        assert set(b) >= {"name", "macs", "flops", "activation_bytes", "receptive_field"}
    assert blocks[0]["activation_bytes"] == 8 * 16 * 4 * 4 * 4
    assert blocks[0]["receptive_field"] == {"size": [16, 16], "jump": [4, 4], "start": [8.0, 8.0], "whole_input": False}
    assert blocks[1]["receptive_field"]["whole_input"] is True
    assert sum(b["macs"] for b in blocks) == report["macs"]
    assert sum(b["kept_bytes"] for b in blocks) <= memory["activations_bytes"]
    # which step, which loss, and the kernel scratch the peak holds, with the facts its rules read
    assert memory["step"] == "2nd step of zero_grad(set_to_none) -> forward -> backward -> optimizer.step (d2l order)"
    assert memory["loss"].startswith("cross-entropy of the batch x classes output")
    assert 0 <= memory["kernel_scratch_bytes"] <= memory["peak_bytes"] and memory["kernel_rules"].startswith("oneDNN ")


def test_cost_help_says_which_step(cli):
    code, out, _ = cli("cost", "--help")
    assert code == 0 and "zero_grad(set_to_none=True)" in out and "the last" in out and "freed before the forward" in out


def test_cost_traces_once_and_builds_once(monkeypatch):
    """`archviz cost` used to trace lenet four times; every part of the report reads one trace."""
    from archviz import build as build_module
    from archviz.arch import Arch
    from archviz.estimate.report import cost_report

    calls = {"trace": 0, "build": 0}
    real_trace, real_build = Arch.trace, build_module.build

    def trace(self, *args, **kwargs):
        calls["trace"] += 1
        return real_trace(self, *args, **kwargs)

    def build(*args, **kwargs):
        calls["build"] += 1
        return real_build(*args, **kwargs)

    monkeypatch.setattr(Arch, "trace", trace)
    monkeypatch.setattr(build_module, "build", build)
    arch = load_arch("lenet_bn")
    cost_report(arch, (8, 1, 28, 28), budget_bytes=2**24)  # a budget search at several batches, too
    assert calls == {"trace": 1, "build": 1}


def test_batch_norm_at_batch_1_says_batch_2_or_eval(cli):
    code, out, err = cli("cost", "lenet_bn", "--input", "1x1x28x28")
    assert code == 1 and "Traceback" not in out + err
    assert err.strip() == (
        "archviz: error: layer 'fc.2' normalises a single value per channel in train mode, which batch norm cannot do; "
        "use a batch of 2 or more, or --mode eval."
    )
    code, out, _ = cli("cost", "lenet_bn", "--input", "1x1x28x28", "--mode", "eval", "--format", "json")
    assert code == 0 and json.loads(out)["memory"]["loss"] == "none (eval forward)"
    code, _, err = cli("cost", "lenet_bn", "--input", "16x1x28x28", "--budget", "100KB")  # the search starts at batch 2
    assert code == 1 and "at batch 2 (2x1x28x28, train, sgd, fp32, cpu), more than the budget of 97.7 KiB." in err


@pytest.mark.slow
def test_cost_on_inception_outputs(cli):
    """torchvision's inception_v3 returns InceptionOutputs(logits, aux_logits) in train mode."""
    code, out, err = cli("cost", "torchvision:inception_v3", "-p", "init_weights=false", "--input", "2x3x299x299", "--format", "json")
    assert code == 0, err
    memory = json.loads(out)["memory"]
    assert memory["loss"].startswith("the sum over the 2 floating-point outputs")
    assert memory["grads_bytes"] == memory["params_bytes"]


def test_cost_on_a_dict_output_and_a_parameterless_model(cli):
    code, out, err = cli("cost", "usermodels:two_heads", "--input", "2x3x16x16", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["memory"]["loss"].startswith("the sum over the 2 floating-point outputs")
    code, out, err = cli("cost", "usermodels:bn_only", "--input", "2x3x16x16", "--optimizer", "adam", "--format", "json")
    assert code == 0, err
    memory = json.loads(out)["memory"]
    assert memory["params_bytes"] == memory["grads_bytes"] == memory["optimizer_bytes"] == 0 and memory["buffers_bytes"] == 4 * 6 + 8


def test_cost_table_and_budget(cli):
    code, out, err = cli("cost", "lenet", "--budget", "64MiB", "--optimizer", "adam")
    assert code == 0, err
    assert "lenet @ 1x1x28x28" in out and "FLOPs = 2 x MACs" in out
    assert "Budget 64.0 MiB: largest batch" in out


def test_cost_for_cuda_without_a_gpu(cli):
    # predicting for a GPU needs no GPU: the answer is a prediction either way
    code, out, _ = cli("cost", "lenet", "--device", "cuda", "--format", "json")
    memory = json.loads(out)["memory"]
    assert code == 0 and memory["device"] == "cuda"
    assert memory["peak_bytes"] % 512 == 0 and memory["params_bytes"] % 512 == 0


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["--optimizer", "rmsprop"], 2, "rmsprop"),
        (["--dtype", "fp8"], 2, "fp8"),
        (["--mode", "test"], 2, "test"),
        (["--budget", "lots"], 2, "is not a size"),
        (["--budget", "80G"], 2, "ambiguous"),
        (["--budget", "0GiB"], 2, "more than zero"),
        (["--budget", "100KB"], 1, "at batch 1"),
        (["--input", "1x3x28x28"], 1, "input channel"),
        (["--input", "1x1x8x8"], 1, "smallest input"),
    ],
)
def test_cost_bad_input(cli, args, code, words):
    exit_code, out, err = cli("cost", "lenet", *args)
    assert exit_code == code
    assert words in err
    assert "Traceback" not in err + out


def test_budget_too_small_says_what_batch_1_needs(cli):
    code, _, err = cli("cost", "vgg11", "--budget", "512MiB", "--device", "cuda")
    assert code == 1
    assert err.startswith("archviz: error: vgg11 needs ") and "at batch 1" in err and "512 MiB" in err
    assert len(err.strip().splitlines()) == 1


def test_compare(cli):
    code, out, err = cli("compare", "lenet", "lenet_bn", "vgg11[ratio=8]", "--batch", "4", "--format", "json")
    assert code == 0, err
    rows = {r["arch"]: r for r in json.loads(out)["archs"]}
    assert rows["lenet"]["total_params"] == 44_426 and rows["lenet_bn"]["total_params"] == 44_878
    assert rows["lenet"]["macs"] == 4 * 281_640
    assert rows["lenet"]["smallest_input"] == [4, 1, 16, 16]
    assert rows["vgg11[ratio=8]"]["output_shape"] == [4, 10]
    assert rows["vgg11[ratio=8]"]["total_params"] < load_arch("vgg11").trace().total_params / 30
    assert rows["lenet_bn"]["peak_bytes"] > rows["lenet"]["peak_bytes"]


def test_compare_at_batch_1_keeps_every_row_and_says_why_batch_norm_has_no_peak(cli):
    # lenet's peak is whatever `cost` predicts on this CPU (its kernel scratch depends on the ISA and threads)
    code, out, err = cli("cost", "lenet", "-f", "json")
    lenet_peak = json.loads(out)["memory"]["peak_bytes"]
    assert 300_000 < lenet_peak < 600_000, lenet_peak
    code, out, err = cli("compare", "lenet", "lenet_bn")
    assert code == 0, err
    row = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")}
    assert row["lenet"][5] == format_bytes(lenet_peak) and row["lenet_bn"][5] == "n/a"
    assert row["lenet_bn"][2] == "44,878"  # the other columns are still there
    note = "batch norm cannot train at batch 1 (layer 'fc.2' sees one value per channel); pass --batch 2 or more"
    assert f"Train peak of lenet_bn: n/a because {note}" in out
    code, out, err = cli("compare", "lenet", "lenet_bn", "-f", "json")
    rows = {r["arch"]: r for r in json.loads(out)["archs"]}
    assert (rows["lenet_bn"]["peak_bytes"], rows["lenet_bn"]["peak_note"]) == (None, note)
    assert (rows["lenet"]["peak_bytes"], rows["lenet"]["peak_note"]) == (lenet_peak, None)
    code, out, err = cli("compare", "lenet", "lenet_bn", "vgg11[ratio=8]", "--batch", "128")
    assert code == 0 and "n/a" not in out and "Train peak of" not in out, err


def test_compare_bad_input(cli):
    code, _, err = cli("compare", "lenet")
    assert code == 2 and "at least two" in err
    code, _, err = cli("compare", "lenet", "vgg11[ratio=8")
    assert code == 2 and "ARCH[KEY=VALUE" in err


_HUGE_SPEC = """name: huge
default_input: 1x1x8x8
layers:
  - flatten
  - linear: {out: 'OUT'}
  - linear: {out: 3}
"""


def test_spec_layer_over_2_53_elements_is_one_sentence_in_shapes_and_cost(cli, tmp_path):
    spec = tmp_path / "huge.yaml"
    spec.write_text(_HUGE_SPEC.replace("OUT", "2**62"))
    expected = (
        f"archviz: error: {spec}:5: layer '1' (Linear) gives a 1x4611686018427387904 tensor of 4.61e+18 elements, "
        "more than archviz accepts in one tensor (9,007,199,254,740,992 = 2^53); use smaller sizes."
    )
    for command in ("shapes", "cost"):
        code, out, err = cli(command, str(spec))
        assert (code, out, err.strip()) == (1, "", expected)


def test_torch_size_overflow_is_one_sentence_and_fits_no_budget(cli, tmp_path):
    from archviz.errors import TooLarge
    from archviz.estimate.simulate import torch_size_overflow

    with pytest.raises(TooLarge) as caught, torch_size_overflow():
        torch.empty(2**62, 4, device="meta")
    assert str(caught.value) == (
        "a layer would make a tensor of more than 2^63 bytes, which torch cannot even size "
        "(Storage size calculation overflowed with sizes=[4611686018427387904, 4]); use a smaller batch, input or layer."
    )
    # 2^40 features per image: torch cannot size the Linear's output from batch 2^21 on (2^61 floats = 2^63 bytes)
    spec = tmp_path / "wide.yaml"
    spec.write_text(_HUGE_SPEC.replace("OUT", "2**40"))
    code, out, err = cli("cost", str(spec), "--budget", "100000000TiB", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["budget"]["largest_batch"] == 2**21 - 1


def test_compare_help_example_with_three_channel_inputs_runs(cli):
    code, out, _ = cli("compare", "--help")
    assert "archviz compare 'resnet18[in_channels=3]' torchvision:resnet18 --input 1x3x96x96 --format markdown" in out
    code, out, err = cli("compare", "resnet18[in_channels=3]", "torchvision:resnet18", "--input", "1x3x96x96", "--format", "json")
    assert code == 0, err
    rows = {r["arch"]: r for r in json.loads(out)["archs"]}
    assert rows["resnet18[in_channels=3]"]["total_params"] == 11_184_650 and rows["torchvision:resnet18"]["total_params"] == 11_689_512
    assert rows["resnet18[in_channels=3]"]["output_shape"] == [1, 10] and rows["torchvision:resnet18"]["output_shape"] == [1, 1000]
    # the same smallest input for both: torchvision's is probed in eval mode, as it is traced (train-mode
    # batch norm at batch 1 used to rule out every size below 33x33)
    assert rows["resnet18[in_channels=3]"]["smallest_input"] == rows["torchvision:resnet18"]["smallest_input"] == [1, 3, 1, 1]


def test_cost_on_a_data_dependent_model_names_what_exists(cli):
    """Issue 19: `cost` has no --compute, so its message must not ask for one."""
    code, out, err = cli("cost", "usermodels:DataDependent", "--input", "1x4")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "the forward of DataDependent uses a tensor's value in Python" in err
    assert "rerun with --compute" not in err and "`archviz shapes` with the same arguments and --compute" in err


def test_cost_help_states_the_predicted_loop(cli):
    code, out, _ = cli("cost", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "`l, y_hat = train_step(net, loss, optimizer, X, y)`" in text
    assert "the previous step's output y_hat and loss l stay alive until the next step returns" in text
    assert "up to one output tensor lower" in text
