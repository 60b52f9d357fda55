"""Every built-in, parametrised over the registry: builds, traces like a real forward, matches the seed."""

import pytest
import torch
from forward_shapes import real_output_shapes

from archviz import zoo
from archviz.arch import load_arch
from archviz.spec import dump_spec, parse_spec, resolve
from archviz.trace.from_module import trace_module

BUILTINS = zoo.list_models()

# Parameter counts of the seed's architectures in plain PyTorch (shared/REFERENCE.md).
SEED_PARAMS = {
    "lenet": 44_426,
    "alexnet": 46_764_746,
    "vgg11": 128_806_154,
    "nin": 1_992_166,
    "googlenet": 5_977_530,
    # Not in the seed: LeNet + one BatchNorm (2 params/channel) per conv and hidden linear layer,
    # and d2l's 1-channel ResNet-18 (d2l 7.6 prints 11,178,378 for Fashion-MNIST).
    "lenet_bn": 44_426 + 2 * (6 + 16 + 120 + 84),
    "resnet18": 11_178_378,
}
# The full-size built-ins against torchvision at 1x3x224x224 with 1000 classes: num_params and
# `_ops` (GMACs) of models.get_model_weights(name).DEFAULT.meta, torchvision 0.29 (REFERENCE.md).
TORCHVISION = {
    "vgg16": (138_357_544, 15.47),
    "resnet50": (25_557_032, 4.089),
    "densenet121": (7_978_856, 2.834),
    "mobilenet_v2": (3_504_872, 0.301),
    "shufflenet_v2": (2_278_604, 0.145),  # shufflenet_v2_x1_0
    "regnet_x_400mf": (5_495_976, 0.414),
}
# The rest of d2l's chapter 8 at 1x1x96x96, equal to d2l's own code (tests/test_zoo_modern.py).
D2L_MODERN = {"densenet": 758_226, "resnext": 1_697_546, "regnetx32": 179_290}


def _double_conv(cin: int, cout: int) -> int:
    return 9 * cin * cout + 9 * cout * cout + 4 * cout  # two bias-free 3x3 convs, two batch norms


# The small U-Net, counted by hand: widths 16-32-64-128, each decoder conv reads the skip + the upsampled map.
UNET_PARAMS = (
    _double_conv(1, 16) + _double_conv(16, 32) + _double_conv(32, 64) + _double_conv(64, 128)
    + _double_conv(64 + 128, 64) + _double_conv(32 + 64, 32) + _double_conv(16 + 32, 16) + (16 * 2 + 2)
)  # fmt: skip
PARAMS = {**SEED_PARAMS, **D2L_MODERN, **{name: params for name, (params, _) in TORCHVISION.items()}, "unet": UNET_PARAMS}
# Built-ins whose output keeps the input's height and width (per-pixel scores), not NxK.
DENSE_OUTPUT = {"unet"}


def expected_output(name: str, shape: tuple[int, ...], num_classes: int) -> tuple[int, ...]:
    return (shape[0], num_classes, *shape[2:]) if name in DENSE_OUTPUT else (shape[0], num_classes)


# The seed chapter's printed tables (shared/seed/cnn-chapter.md, REFERENCE.md).
SEED_TABLES = {
    "vgg11": [
        ("VGG_0", (1, 64, 112, 112)),
        ("VGG_1", (1, 128, 56, 56)),
        ("VGG_2", (1, 256, 28, 28)),
        ("VGG_3", (1, 512, 14, 14)),
        ("VGG_4", (1, 512, 7, 7)),
        ("fc", (1, 10)),
    ],
    "nin": [
        ("0", (1, 96, 58, 58)),
        ("1", (1, 96, 28, 28)),
        ("2", (1, 256, 28, 28)),
        ("3", (1, 256, 13, 13)),
        ("4", (1, 384, 13, 13)),
        ("5", (1, 384, 6, 6)),
        ("6", (1, 384, 6, 6)),
        ("7", (1, 10, 6, 6)),
        ("8", (1, 10, 1, 1)),
        ("9", (1, 10)),
    ],
    "googlenet": [
        ("b1", (1, 64, 24, 24)),
        ("b2", (1, 192, 12, 12)),
        ("b3", (1, 480, 6, 6)),
        ("b4", (1, 832, 3, 3)),
        ("b5", (1, 1024)),
        ("head", (1, 10)),
    ],
    "lenet": [("conv", (1, 16, 4, 4)), ("fc", (1, 10))],
    "alexnet": [("conv", (1, 256, 5, 5)), ("fc", (1, 10))],
}
DEFAULT_INPUTS = {
    "lenet": (1, 1, 28, 28),
    "lenet_bn": (1, 1, 28, 28),
    "alexnet": (1, 1, 224, 224),
    "vgg11": (1, 1, 224, 224),
    "nin": (1, 1, 224, 224),
    "googlenet": (1, 1, 96, 96),
    "resnet18": (1, 1, 96, 96),
    **{name: (1, 1, 96, 96) for name in D2L_MODERN},
    **{name: (1, 3, 224, 224) for name in TORCHVISION},
    "unet": (1, 1, 96, 96),
}


def test_registry_holds_the_zoo_in_teaching_order():
    assert BUILTINS == ["lenet", "lenet_bn", "alexnet", "vgg11", "nin", "googlenet", "resnet18", *D2L_MODERN, *TORCHVISION, "unet"]
    assert set(BUILTINS) == set(PARAMS) == set(DEFAULT_INPUTS)
    assert zoo.list_models("lenet*") == ["lenet", "lenet_bn"]


def test_duplicate_registration_is_loud():
    with pytest.raises(ValueError, match="registered twice"):
        zoo.register("lenet", zoo.spec_path("lenet"))


@pytest.mark.parametrize("name", BUILTINS)
def test_default_input_and_description(name):
    arch = load_arch(name)
    assert arch.default_input == DEFAULT_INPUTS[name]
    assert arch.description and "\n" not in arch.description


@pytest.mark.parametrize("name", BUILTINS)
def test_params_match_reference_and_torch(name):
    arch = load_arch(name)
    trace = arch.trace()
    model = arch.build(device="meta")
    assert trace.total_params == PARAMS[name]
    assert trace.total_params == sum(p.numel() for p in model.parameters())
    assert trace.trainable_params == trace.total_params


@pytest.mark.parametrize("name", SEED_TABLES)
def test_seed_tables(name):
    trace = load_arch(name).trace()
    assert [(n.path, n.output_shape) for n in trace.blocks(1)] == SEED_TABLES[name]


@pytest.mark.parametrize("name", BUILTINS)
def test_shape_arithmetic_equals_real_forward_at_batch_2(name):
    """The spec trace (no torch) against real tensors through the real module on CPU."""
    arch = load_arch(name)
    shape = (2, *arch.default_input[1:])
    trace = arch.trace(shape)
    model = arch.build(shape)
    model.eval()
    Y, seen = real_output_shapes(model, torch.randn(shape))
    assert tuple(Y.shape) == trace.output_shape == expected_output(name, shape, arch.params["num_classes"])
    assert {n.path: n.output_shape for n in trace.nodes} == seen


@pytest.mark.parametrize("name", BUILTINS)
def test_spec_trace_equals_meta_module_trace(name):
    """Shape arithmetic and the torch tracer agree on every node, FLOP and graph edge."""
    arch = load_arch(name)
    shape = (3, *arch.default_input[1:])
    assert arch.trace(shape) == trace_module(arch.build(shape, device="meta"), shape, arch.name)


@pytest.mark.parametrize("name", BUILTINS)
def test_spec_round_trip(name):
    """built-in -> YAML -> spec -> the same layers and the same trace."""
    spec = zoo.get_spec(name)
    again = parse_spec(dump_spec(spec), source="roundtrip")
    assert again.layers == spec.layers
    assert again.blocks == spec.blocks
    assert again.params == spec.params
    assert again.default_input == spec.default_input
    from archviz.trace.from_spec import trace_spec

    r1, r2 = resolve(spec), resolve(again)
    assert trace_spec(r1, r1.default_input, name) == trace_spec(r2, r2.default_input, name)


@pytest.mark.parametrize("name", TORCHVISION)
def test_full_size_builtins_match_torchvision(name):
    """Params exactly, MACs within 1% of torchvision's published GFLOPS (which count MACs)."""
    params, gmacs = TORCHVISION[name]
    trace = load_arch(name).trace()
    assert trace.input_shape == (1, 3, 224, 224) and trace.output_shape == (1, 1000)
    assert trace.total_params == params
    macs = trace.flops / 2
    assert abs(macs / (gmacs * 1e9) - 1) < 0.01, f"{name}: {macs / 1e9:.3f} GMACs vs torchvision's {gmacs}"


@pytest.mark.parametrize("side", [8, 32, 96, 200])
def test_unet_keeps_height_and_width(side):
    trace = load_arch("unet", ["num_classes=5"]).trace((2, 1, side, side + 16))
    assert trace.output_shape == (2, 5, side, side + 16)
    # Each skip concatenates the encoder's map with the upsampled deeper one, at the same size.
    cats = {op.id: op.output_shape for op in trace.ops if op.type == "cat"}
    assert cats == {
        "unet.0:cat": (2, 16 + 32, side, side + 16),
        "unet.0.p2.2.0:cat": (2, 32 + 64, side // 2, (side + 16) // 2),
        "unet.0.p2.2.0.p2.2.0:cat": (2, 64 + 128, side // 4, (side + 16) // 4),
    }


def test_unet_needs_a_multiple_of_8():
    from archviz.errors import RunError

    with pytest.raises(
        RunError, match=r"unet.yaml:31: block 'unet.0.p2.2.0.p2.2.0' cannot concatenate its branches: p1 gives \[1, 64, 9, 9\] but p2 gives \[1, 128, 8, 8\]"
    ):
        load_arch("unet").trace((1, 1, 36, 36))


def test_vgg_ratio_narrows_every_width():
    trace = load_arch("vgg11", ["ratio=8"]).trace()
    convs = [n for n in trace.nodes if n.type == "Conv2d"]
    assert [c.attrs["out_channels"] for c in convs] == [8, 16, 32, 32, 64, 64, 64, 64]
    linears = [n for n in trace.nodes if n.type == "Linear"]
    # The seed's narrow variant: fc_features // 8 = 3136 and 4096 // 8 = 512.
    assert [(n.attrs["in_features"], n.attrs["out_features"]) for n in linears] == [(3136, 512), (512, 512), (512, 10)]


def test_vgg_first_linear_follows_the_resolution():
    trace = load_arch("vgg11").trace((1, 1, 96, 96))
    assert trace.node("fc.1").attrs["in_features"] == 512 * 3 * 3


def test_in_channels_and_num_classes_params():
    trace = load_arch("googlenet", ["in_channels=3", "num_classes=100"]).trace((2, 3, 96, 96))
    assert trace.output_shape == (2, 100)
    assert trace.node("b1.0").attrs["in_channels"] == 3
    assert load_arch("resnet18", {"in_channels": 3}).default_input == (1, 3, 96, 96)


def test_googlenet_inception_fixes_the_seed_bugs():
    trace = load_arch("googlenet").trace()
    pool = trace.node("b3.0.p4.0")
    assert pool.type == "MaxPool2d" and pool.attrs["stride"] == (1, 1)
    cat = next(op for op in trace.ops if op.id == "b3.0:cat")
    assert cat.inputs == ("b3.0.p1.1", "b3.0.p2.3", "b3.0.p3.3", "b3.0.p4.2")
    assert cat.output_shape == (1, 256, 12, 12)
    # The seed's b2 has no ReLU (d2l adds one after each conv).
    assert [n.type for n in trace.children("b2")] == ["Conv2d", "Conv2d", "MaxPool2d"]


def test_resnet_block_has_a_shortcut_join():
    trace = load_arch("resnet18").trace()
    add = next(op for op in trace.ops if op.id == "b3.0:add")
    assert add.inputs == ("b3.0.body.4", "b3.0.shortcut.0")
    identity = next(op for op in trace.ops if op.id == "b2.0:add")
    assert identity.inputs == ("b2.0.body.4", "b1.3")
