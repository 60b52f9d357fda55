"""Checkpoints and run files, written atomically: a crash or Ctrl-C never leaves half a file.

Every file is written to a temporary name in the same directory, flushed to disk, then
renamed over the old one with ``os.replace`` (atomic on POSIX and Windows), so a reader
sees either the previous complete file or the new complete file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from archviz.errors import RunError, UsageError

FORMAT = 1  # bump when the checkpoint layout changes


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; run files are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def save(state: dict[str, Any], path: str | Path) -> None:
    """Save a checkpoint dict (see ``loop.train`` for its keys) atomically."""
    write_atomic(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save``; RunError if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"there is no checkpoint at {path}; pass a run directory holding last.pt or best.pt, or a .pt file.")
    try:
        # Our checkpoints hold RNG states and plain Python data besides tensors; they are
        # files this tool wrote, so full unpickling is acceptable (the run dir is trusted).
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise RunError(f"{path} is not a readable archviz checkpoint ({type(exc).__name__}: {exc}).") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RunError(f"{path} is not an archviz checkpoint (format {FORMAT}); it was written by another tool or version.")
    return state


def rng_state() -> dict[str, Any]:
    """This process's random-number state (dropout, anything that draws from torch's generators)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
