"""Small user modules whose training-step peak sits on a CPU kernel's hidden allocations (issue 19).

Each is a ``module:callable`` ARCH (``benchmarks/memory_accuracy.py --set kernels`` puts this folder on
the path). The rules in archviz/estimate/workspace.py and the oneDNN LSTM path in archviz/estimate/simulate.py
were written on the first group ("rules written on"); the second group was built afterwards to check
them ("held out"), with other shapes, other ops of the same kinds and other compositions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# -- rules written on --------------------------------------------------------------------


class MaskMLP(nn.Module):
    """``h * (h > 0)``: the bool mask is copied to float in the forward and again in the backward."""

    def __init__(self, width: int = 512) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(64, width), nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.b(h * (h > 0))


class TransposedSoftmax(nn.Module):
    """Attention scores softmaxed along a transposed view: the softmax kernels copy the non-contiguous input and gradient."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.q, self.out = nn.Linear(dim, dim), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.q(x) @ x.transpose(1, 2)
        p = scores.transpose(1, 2).softmax(-1)
        return self.out((p @ x).mean(1))


class EinsumUpsample(nn.Module):
    """einsum over channels (its output arrives channels-last) then bilinear upsampling: the conv backward copies its gradient."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.mix = nn.Parameter(torch.randn(channels, channels) / channels)
        self.fc = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("bchw,cd->bdhw", self.conv(x), self.mix)
        h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
        return self.fc(h.mean((2, 3)))


class LSTMClassifier(nn.Module):
    """Embedding + one-layer LSTM + linear head on the last step: oneDNN's LSTM workspace and scratch."""

    def __init__(self, vocab: int = 1000, embed: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x))
        return self.fc(out[:, -1])


class _Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class CustomFunction(nn.Module):
    """A custom ``autograd.Function``: named in the prediction with a margin."""

    def __init__(self, width: int = 512) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(64, width), nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(_Square.apply(self.a(x)))


# -- held out: built after the rules, to check them --------------------------------------


class LeakyWhere(nn.Module):
    """Masks of other kinds: ``torch.where`` with a python scalar, a comparison against an int64 tensor, ``x + mask``."""

    def __init__(self, width: int = 384) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(48, width), nn.Linear(width, 10)
        self.register_buffer("threshold", torch.zeros(width, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        h = torch.where(h > self.threshold, h, 0.1 * h)
        return self.b(h + (h < 1))


class ChannelLogSoftmax(nn.Module):
    """log_softmax over channels of a permuted feature map (non-contiguous in and out)."""

    def __init__(self, channels: int = 24) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.fc = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).permute(0, 2, 3, 1)  # B, H, W, C as a view
        h = F.log_softmax(h, dim=1)  # along H, on a non-contiguous tensor
        return self.fc(h.mean((1, 2)))


class NHWCBlock(nn.Module):
    """A ConvNeXt-style block written by hand: LayerNorm over a permuted map, a 5x5 depthwise conv on channels-last strides."""

    def __init__(self, channels: int = 48) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 2, stride=2)
        self.norm = nn.LayerNorm(channels)
        self.dw = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.pw = nn.Linear(channels, 2 * channels)
        self.fc = nn.Linear(2 * channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x).permute(0, 2, 3, 1)
        h = self.norm(h).permute(0, 3, 1, 2)  # channels-last strides
        h = self.dw(h).permute(0, 2, 3, 1)
        return self.fc(F.gelu(self.pw(h)).mean((1, 2)))


class BiLSTMTagger(nn.Module):
    """Two-layer bidirectional LSTM, time-major input, a head on every step."""

    def __init__(self, vocab: int = 500, embed: int = 40, hidden: int = 96) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x.t()))
        return self.fc(out.mean(0))


class GRUClassifier(nn.Module):
    """A GRU (ATen runs it cell by cell on a CPU, no oneDNN): nothing may change for it."""

    def __init__(self, vocab: int = 800, embed: int = 32, hidden: int = 112) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.embed(x))
        return self.fc(out[:, -1])


class TwoInputs(nn.Module):
    """An image and a vector: the vector gates the pooled features through a mask cast and an fp32/int64 comparison."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.gate = nn.Linear(16, channels)
        self.fc = nn.Linear(channels, 10)

    def forward(self, image: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        h = self.conv(image)
        h = h * (h > 0)
        g = torch.sigmoid(self.gate(vector))[:, :, None, None]
        return self.fc((h * g).mean((2, 3)))


class _ClampGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(-1, 1)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1)


class CustomClamp(nn.Module):
    """Another custom ``autograd.Function`` (a straight-through clamp whose backward casts a mask)."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.fc = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(_ClampGrad.apply(self.conv(x)).mean((2, 3)))
