"""Models for the launcher tests: `dist_models:...` as a module:callable ARCH."""

import os
import signal

from torch import nn


def dies_on_rank_1() -> nn.Module:
    """A tiny CNN, except that the process with RANK=1 is killed while building it (as by a crash or the OOM killer)."""
    if os.environ.get("RANK") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
