"""Checkpoints: tensors and plain data only, written atomically, read without unpickling code.

A checkpoint holds the model's and optimizer's state dicts, the run's configuration (with
the resolved spec it was trained on), its history and RNG states: tensors, numbers, text,
lists and dicts, nothing else. ``torch.load(weights_only=True)`` reads exactly that and
refuses any pickled object, so a downloaded ``.pt`` can never run its own code here.
Writes go through :func:`archviz.files.write_atomic` (a crash leaves the old file whole).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from archviz.errors import RunError, UsageError
from archviz.files import write_atomic, write_text_atomic

__all__ = ["FORMAT", "load", "save", "write_atomic", "write_text_atomic", "rng_state", "set_rng_state"]

FORMAT = 1  # bump when the checkpoint layout changes
_PLAIN = (str, int, float, bool, type(None))


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """TypeError unless ``value`` is tensors and plain data (what weights_only=True loads back)."""
    if isinstance(value, (torch.Tensor, torch.Size, *_PLAIN)):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _PLAIN):
                raise TypeError(f"{where} has a {type(key).__name__} key")
            check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}, not a tensor or plain data")


def save(state: dict[str, Any], path: str | Path) -> None:
    """Save a checkpoint dict (see ``loop.checkpoint_state`` for its keys) atomically."""
    state = {"format": FORMAT, **state}
    check_plain(state)  # a bug if not: it would not load back with weights_only=True
    write_atomic(path, lambda f: torch.save(state, f))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save``; RunError if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"there is no checkpoint at {path}; pass a run directory holding last.pt or best.pt, or a .pt file.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a Python object: never run it
        named = re.search(r"GLOBAL\s+([\w.]+)", str(exc))
        raise RunError(
            f"{path} holds Python objects besides tensors and plain data ({named.group(1) if named else 'a pickled object'}); "
            f"archviz loads only tensors and plain data and will not run code from a checkpoint."
        ) from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RunError(f"{path} is not a readable archviz checkpoint ({type(exc).__name__}: {first}).") from None
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
