"""Checkpoints: tensors and plain data only, written atomically, read without unpickling code.

A checkpoint holds the model's and optimizer's state dicts, the run's configuration (with
the resolved spec it was trained on), its history and RNG states: tensors, numbers, text,
lists and dicts, nothing else. ``torch.load(weights_only=True)`` reads exactly that and
refuses any pickled object, so a downloaded ``.pt`` can never run its own code here.
Writes go through :func:`archviz.files.write_atomic` (a crash leaves the old file whole).
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from archviz.errors import RunError, UsageError
from archviz.files import read_bounded, write_atomic, write_text_atomic

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
    # Serialised in memory first: torch's zip writer turns a full disk into a RuntimeError about
    # "unexpected pos"; a plain write of the bytes gives the OSError that says "No space left".
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getbuffer())


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
    if not isinstance(state.get("model"), dict):
        raise RunError(f"{path} is an incomplete archviz checkpoint (no model weights); it is corrupt.")
    return state


def check_resumable(state: dict[str, Any], path: Path | str, fields: set[str]) -> None:
    """RunError, in one sentence, unless ``state`` (from ``load``) has what ``--resume`` reads, in the
    types archviz writes: ``epoch`` and ``batch`` counts, a ``history`` of epoch records (``fields``),
    one entry per process in ``ranks`` with its RNG state, and an optimizer state."""

    def bad(what: str) -> RunError:
        return RunError(f"{path} cannot be resumed: {what}; it is corrupt or was not written by archviz train (start a new run with --out).")

    def count(key: str) -> int:
        value = state.get(key)
        if type(value) is not int or value < 0:
            raise bad(f"its {key!r} is {value!r}, not a count of completed {key}s")
        return value

    count("epoch")
    count("batch")
    history = state.get("history")
    if not isinstance(history, list) or len(history) != state["epoch"]:
        raise bad(f"its history is not a list of {state['epoch']} epoch records")
    for record in history:
        if not isinstance(record, dict) or set(record) != fields or not all(type(v) in (int, float) for v in record.values()):
            raise bad(f"its history holds {str(record)[:60]!r}, not an epoch record of {', '.join(sorted(fields))}")
    ranks = state.get("ranks")
    if not isinstance(ranks, list) or not ranks:
        raise bad("it records no training process (its 'ranks' list is empty or missing)")
    for entry in ranks:
        rng = entry.get("rng") if isinstance(entry, dict) else None
        partial = entry.get("partial") if isinstance(entry, dict) else None
        if not isinstance(rng, dict) or not isinstance(rng.get("torch"), torch.Tensor) or rng["torch"].dtype != torch.uint8:
            raise bad("a process's random-number state is missing or not a byte tensor")
        if partial is not None and not (
            isinstance(partial, dict)
            and isinstance(partial.get("sums"), list)
            and len(partial["sums"]) == 3
            and all(type(v) in (int, float) for v in partial["sums"] + [partial.get("seconds")])
        ):
            raise bad("a process's unfinished-epoch sums are malformed")
    optimizer = state.get("optimizer")
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("param_groups"), list) or not isinstance(optimizer.get("state"), dict):
        raise bad("it holds no optimizer state")


def with_spec(config: Any) -> Any:
    """``config`` carrying the text of its spec file, when its ARCH is one (a run is self-contained)."""
    from archviz import zoo
    from archviz.spec.loader import MAX_SPEC_BYTES

    if config.spec is not None or zoo.is_builtin(config.arch) or not _is_spec_file(config.arch):
        return config
    text = read_bounded(config.arch, MAX_SPEC_BYTES, "spec file").decode("utf-8", errors="replace")
    return dataclasses.replace(config, spec=text)


def _is_spec_file(arch: str) -> bool:
    return arch.endswith((".yaml", ".yml")) or (":" not in arch and Path(arch).exists())


def names_code(arch: str) -> bool:
    """Whether ARCH is ``package.module:callable``: loading it imports and runs that code.

    Built-ins, spec files (data) and ``torchvision:NAME`` (torchvision's own constructors, no
    user code) are not.
    """
    from archviz import zoo

    return ":" in arch and not arch.startswith("torchvision:") and not zoo.is_builtin(arch) and not _is_spec_file(arch)


def refuse_code(arch: str, source: str, trusted: bool, how: str) -> None:
    """UsageError when ``arch``, read from ``source`` (a run's file, i.e. data), names code and the user did not vouch for it."""
    if trusted or not names_code(arch):
        return
    raise UsageError(
        f"{source} names the Python callable {arch!r} as its architecture, and archviz never imports code named in a run's files; "
        f"if you trust it, name it yourself ({how}) or pass --trust-code."
    )


def run_arch(config: Any, trusted: bool = True, source: str = "the run", how: str = "ARCH on the command line") -> tuple[Any, str | None]:
    """The architecture a run trains or was trained as, and a note when its spec file has changed since.

    A run that carries its spec (``config.spec``) is rebuilt from it, wherever the command runs
    and whatever happened to the file (the spec is data: loading it runs no code); other ARCHs
    are loaded by name. ``trusted``: ``config`` came from the user (command line, Python), not
    from a run's files; a ``module:callable`` read from files is refused (see ``refuse_code``).
    """
    from archviz.arch import Arch, load_arch

    if config.spec is None:
        refuse_code(config.arch, source, trusted, how)
        return load_arch(config.arch, config.params), None
    from archviz.spec import parse_spec, resolve

    spec = parse_spec(config.spec, source=f"{config.arch} (the copy stored in the run)", default_name=Path(config.arch).stem)
    resolved = resolve(spec, config.params)
    arch = Arch(spec.name, "file", resolved.default_input, spec.description, resolved, params=resolved.params)
    try:  # a file that is gone (another directory) is no news; one that differs is
        current = read_bounded(config.arch, len(config.spec.encode()) + 1, "spec file").decode("utf-8", errors="replace")
    except UsageError:
        current = None if not Path(config.arch).is_file() else ""
    if current is None or current == config.spec:
        return arch, None
    return arch, f"note: {config.arch} has changed since this run was trained; using the spec stored in the run."


def load_weights(net: torch.nn.Module, weights: dict[str, Any], path: Path | str, arch: str) -> None:
    """``net.load_state_dict(weights)``, or one sentence saying how the two differ (never torch's key lists)."""
    mine = net.state_dict()
    missing = [k for k in mine if k not in weights]
    unexpected = [k for k in weights if k not in mine]
    reshaped = [k for k in mine if k in weights and tuple(mine[k].shape) != tuple(getattr(weights[k], "shape", ()))]
    if not (missing or unexpected or reshaped):
        net.load_state_dict(weights)
        return
    parts = [f"{len(x)} {what}" for x, what in ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if x]
    if reshaped:
        k = reshaped[0]
        example = f"e.g. {k} is {list(weights[k].shape)} in the checkpoint, {list(mine[k].shape)} now"
    else:
        example = f"e.g. {(missing or unexpected)[0]!r} is {'missing' if missing else 'unexpected'}"
    raise RunError(
        f"the weights in {path} do not fit {arch} as it is built now ({', '.join(parts)} tensors; {example}); "
        f"its code, spec or -p values changed since the run was trained."
    )


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
