"""Models a user might point archviz at with `module:callable` (used by the tests)."""

import torch
from torch import nn


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    """A tiny CNN with batch norm and a skip-free head."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


torch.manual_seed(0)
SHARED = tiny_cnn()
SHARED.train()


def shared_model() -> nn.Module:
    """Returns the same, already-built module every time: archviz must not touch it."""
    return SHARED


def not_a_module():
    return "hello"


NOT_CALLABLE = 42


class TextClassifier(nn.Module):
    """Embedding + LSTM + linear: takes int64 token ids [batch, seq]."""

    def __init__(self, vocab: int = 100, embed: int = 16, hidden: int = 32, num_classes: int = 2):
        super().__init__()
        self.emb = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, tokens):
        out, _ = self.lstm(self.emb(tokens))
        return self.head(out[:, -1])


def audio_net() -> nn.Module:
    """Conv1d over raw audio [batch, 1, samples]."""
    return nn.Sequential(
        nn.Conv1d(1, 8, 80, stride=16), nn.ReLU(), nn.MaxPool1d(4), nn.Conv1d(8, 16, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 5)
    )


def transformer() -> nn.Module:
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


class TwoInputs(nn.Module):
    """forward(x, y): two feature vectors, two heads returned as a dict."""

    def __init__(self):
        super().__init__()
        self.fx = nn.Linear(8, 4)
        self.fy = nn.Linear(6, 4)
        self.heads = nn.ModuleDict({"cls": nn.Linear(4, 3), "reg": nn.Linear(4, 1)})

    def forward(self, x, y):
        h = self.fx(x) + self.fy(y)
        return {"cls": self.heads["cls"](h), "reg": self.heads["reg"](h)}


class Stack(nn.Module):
    """A ModuleList of identical blocks, applied in a loop, and a tuple output."""

    def __init__(self, n: int = 4, width: int = 8):
        super().__init__()
        self.stem = nn.Linear(3, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(n))
        self.unused = nn.Linear(width, 1)  # never called by forward
        self.scale = nn.Parameter(torch.ones(width))  # held by the model itself

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x * self.scale, x.sum(dim=1)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.mean() > 0:  # needs a real value: the meta device cannot answer
            return self.fc(x)
        return -self.fc(x)


def configurable(widths=(4, 8), dropout: float = 0.0, bias: bool = True, norm=None, act: str = "relu") -> nn.Module:
    """Every -p value type: a list, a float, a bool, None, a string."""
    layers, c = [], 3
    for w in widths:
        layers += [nn.Linear(c, w, bias=bias)]
        if norm is not None:
            layers.append(nn.LayerNorm(w))
        layers += [nn.ReLU() if act == "relu" else nn.GELU(), nn.Dropout(dropout)]
        c = w
    return nn.Sequential(*layers)


def broken_init() -> nn.Module:
    raise ValueError("boom")


class BrokenForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        raise ValueError("bad forward")


def exits_in_init() -> nn.Module:
    import sys

    sys.exit(3)


class ExitsInForward(nn.Module):
    def forward(self, x):
        import sys

        sys.exit("stop")


class Chatty(nn.Module):
    """Prints in its constructor and its forward (it must not reach stdout)."""

    def __init__(self):
        super().__init__()
        print("hello from __init__")
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        print("hello from forward")
        return self.fc(x)


def slow() -> nn.Module:
    import time

    time.sleep(1.6)
    return nn.Linear(4, 2)


class TwoHeads(nn.Module):
    """Returns a dict of two outputs (logits and an auxiliary map), like detection-style heads."""

    def __init__(self, kind: str = "dict"):
        super().__init__()
        self.kind = kind
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, X):
        features = self.body(X)
        logits = self.head(features.mean((2, 3)))
        if self.kind == "tuple":
            return logits, features
        if self.kind == "list":
            return [logits, features]
        if self.kind == "namedtuple":
            return Heads(logits, features)
        return {"logits": logits, "features": features, "count": torch.ones(1, dtype=torch.long)}


Heads = __import__("collections").namedtuple("Heads", ["logits", "features"])


def two_heads(kind: str = "dict") -> nn.Module:
    return TwoHeads(kind)


def frozen_cnn() -> nn.Module:
    """No trainable parameter: every weight frozen, batch norm's buffers still there."""
    net = tiny_cnn()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def bn_only() -> nn.Module:
    """Batch norm without affine parameters: buffers, no parameters at all."""
    return nn.Sequential(nn.BatchNorm2d(3, affine=False), nn.Flatten())


def gray_cnn(num_classes: int = 10) -> nn.Module:
    """A 1-channel CNN: `archviz train` must feed it 1 channel, read from its first layer."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


def mlp(num_classes: int = 10) -> nn.Module:
    """Flattened 28x28 gray images: its first layer says both the channels (1) and the size (28)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, num_classes))


class FailsHalfway(nn.Module):
    """Two conv stages, then a linear layer of the wrong width: the forward fails at `head.1` (issue 16, partial diagrams)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(100, 10))

    def forward(self, x):
        return self.head(self.features(x) + x.mean())


def make(model_name: str = "tiny", num_classes: int = 10) -> nn.Module:
    """A factory that names what it builds, as timm's create_model(model_name) does."""
    widths = {"tiny": (4, 8), "small": (8, 16)}[model_name]
    return configurable(widths=widths)


def made_for_384(num_classes: int = 10) -> nn.Module:
    """Says its input size as timm does (``pretrained_cfg["input_size"]``): shapes and cost trace it at 384."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
    net.pretrained_cfg = {"input_size": (3, 384, 384)}
    return net
