"""The rest of d2l's modern-CNN chapter, checked against d2l's own code.

d2l is not a dependency, so its classes are restated here line by line from the book
(d2l 8.6 ResNeXtBlock and ResNet, 8.7 DenseNet, 8.8 AnyNet/RegNetX32, PyTorch tab, with
LazyConv2d as d2l writes it). They are the oracle: each built-in must have the same
parameter count and the same top-level output shapes at 1x1x96x96.
"""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from archviz.arch import load_arch


class ResNeXtBlock(nn.Module):  # d2l 8.6
    def __init__(self, num_channels, groups, bot_mul, use_1x1conv=False, strides=1):
        super().__init__()
        bot_channels = int(round(num_channels * bot_mul))
        self.conv1 = nn.LazyConv2d(bot_channels, kernel_size=1, stride=1)
        self.conv2 = nn.LazyConv2d(bot_channels, kernel_size=3, stride=strides, padding=1, groups=bot_channels // groups)
        self.conv3 = nn.LazyConv2d(num_channels, kernel_size=1, stride=1)
        self.bn1 = nn.LazyBatchNorm2d()
        self.bn2 = nn.LazyBatchNorm2d()
        self.bn3 = nn.LazyBatchNorm2d()
        if use_1x1conv:
            self.conv4 = nn.LazyConv2d(num_channels, kernel_size=1, stride=strides)
            self.bn4 = nn.LazyBatchNorm2d()
        else:
            self.conv4 = None

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = F.relu(self.bn2(self.conv2(Y)))
        Y = self.bn3(self.conv3(Y))
        if self.conv4:
            X = self.bn4(self.conv4(X))
        return F.relu(Y + X)


def d2l_b1():  # d2l 8.6 ResNet.b1, reused by DenseNet
    return nn.Sequential(
        nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    )


def d2l_resnext18():
    """d2l's ResNet(arch=((2, 64), (2, 128), (2, 256), (2, 512))) with ResNeXtBlock(groups=16, bot_mul=1)."""
    net = nn.Sequential(d2l_b1())
    for i, (num_residuals, num_channels) in enumerate(((2, 64), (2, 128), (2, 256), (2, 512))):
        blk = []
        for j in range(num_residuals):
            if j == 0 and i != 0:
                blk.append(ResNeXtBlock(num_channels, 16, 1, use_1x1conv=True, strides=2))
            else:
                blk.append(ResNeXtBlock(num_channels, 16, 1))
        net.add_module(f"b{i + 2}", nn.Sequential(*blk))
    net.add_module("last", nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.LazyLinear(10)))
    return net


class DenseBlock(nn.Module):  # d2l 8.7
    def __init__(self, num_convs, num_channels):
        super().__init__()
        layer = []
        for _ in range(num_convs):
            layer.append(nn.Sequential(nn.LazyBatchNorm2d(), nn.ReLU(), nn.LazyConv2d(num_channels, kernel_size=3, padding=1)))
        self.net = nn.Sequential(*layer)

    def forward(self, X):
        for blk in self.net:
            Y = blk(X)
            X = torch.cat((X, Y), dim=1)
        return X


def d2l_densenet(num_channels=64, growth_rate=32, arch=(4, 4, 4, 4)):
    net = nn.Sequential(d2l_b1())
    for i, num_convs in enumerate(arch):
        net.add_module(f"dense_blk{i + 1}", DenseBlock(num_convs, growth_rate))
        num_channels += num_convs * growth_rate
        if i != len(arch) - 1:
            num_channels //= 2
            net.add_module(
                f"tran_blk{i + 1}",
                nn.Sequential(nn.LazyBatchNorm2d(), nn.ReLU(), nn.LazyConv2d(num_channels, kernel_size=1), nn.AvgPool2d(kernel_size=2, stride=2)),
            )
    net.add_module("last", nn.Sequential(nn.LazyBatchNorm2d(), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.LazyLinear(10)))
    return net


def d2l_regnetx32():
    """d2l 8.8: AnyNet(arch=((4, 32, 16, 1), (6, 80, 16, 1)), stem_channels=32)."""
    net = nn.Sequential(nn.Sequential(nn.LazyConv2d(32, kernel_size=3, stride=2, padding=1), nn.LazyBatchNorm2d(), nn.ReLU()))
    for i, (depth, num_channels, groups, bot_mul) in enumerate(((4, 32, 16, 1), (6, 80, 16, 1))):
        blk = [ResNeXtBlock(num_channels, groups, bot_mul, use_1x1conv=True, strides=2)]
        blk += [ResNeXtBlock(num_channels, groups, bot_mul) for _ in range(depth - 1)]
        net.add_module(f"stage{i + 1}", nn.Sequential(*blk))
    net.add_module("head", nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.LazyLinear(10)))
    return net


D2L = {"densenet": d2l_densenet, "resnext": d2l_resnext18, "regnetx32": d2l_regnetx32}


# d2l's printed numbers (the copies above reproduce them): a change to the copy or to the spec is seen.
D2L_PARAMS = {"densenet": 758_226, "resnext": 1_697_546, "regnetx32": 179_290}
D2L_SHAPES = {
    "densenet": [(1, 64, 24, 24), (1, 192, 24, 24), (1, 96, 12, 12), (1, 224, 12, 12), (1, 112, 6, 6), (1, 240, 6, 6), (1, 120, 3, 3), (1, 248, 3, 3), (1, 10)],
    "regnetx32": [(1, 32, 48, 48), (1, 32, 24, 24), (1, 80, 12, 12), (1, 10)],
    "resnext": [(1, 64, 24, 24), (1, 64, 24, 24), (1, 128, 12, 12), (1, 256, 6, 6), (1, 512, 3, 3), (1, 10)],
}


@pytest.mark.parametrize("name", D2L)
def test_matches_d2l(name):
    torch.manual_seed(0)
    reference = D2L[name]()
    X = torch.zeros(1, 1, 96, 96)
    shapes = []
    with torch.no_grad():
        for blk in reference:
            X = blk(X)
            shapes.append(tuple(X.shape))
    trace = load_arch(name).trace()
    assert trace.input_shape == (1, 1, 96, 96)
    assert [n.output_shape for n in trace.blocks(1)] == shapes
    assert trace.total_params == sum(p.numel() for p in reference.parameters())
    assert trace.total_params == D2L_PARAMS[name] and shapes == D2L_SHAPES[name]


def test_regnetx32_design_knobs():
    """AnyNet's knobs are parameters: a deeper, wider second stage changes what it should."""
    trace = load_arch("regnetx32", ["depth2=8", "width2=96"]).trace()
    assert trace.node("stage2").output_shape == (1, 96, 12, 12)
    assert len(trace.children("stage2")) == 8
    assert trace.node("stage2.0.body.3").attrs["groups"] == 96 // 16
