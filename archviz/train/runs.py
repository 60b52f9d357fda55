"""The run folder, ``--out``: which files are archviz's, when to refuse it, when to start over.

``claim_out`` checks the folder, then locks it for the run; ``prepare_out`` is the policy:
never overwrite a finished run or the user's files without ``--force``, and a resumed folder
must hold a checkpoint (or config.json) written as plain files.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from archviz.errors import UsageError
from archviz.files import LOCK_NAME, dir_lock, head, is_temp, read_bounded, write_text_atomic
from archviz.train.plot import CURVE_MARK

RUN_FILES = ("config.json", "metrics.json", "last.pt")
RUN_MARK = "run configuration written by archviz train"  # config.json's "archviz" key: the folder is archviz's
EXTRA_RUN_FILES = ("best.pt", "metrics.csv", "learning_curve.svg")


def claim_out(stack: contextlib.ExitStack, out: Path, resume: bool, force: bool) -> bool:
    """Check ``out``, then lock it for the rest of the run (``stack``); whether it holds a checkpoint."""
    prepare_out(out, resume, force, locked=False)  # before creating anything in a folder that is not ours
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write to --out {out} ({exc.strerror or exc}); choose a directory you can write to.") from None
    stack.enter_context(dir_lock(out, "the run folder" if resume else "--out"))
    return prepare_out(out, resume, force, locked=True)


def problem(check, *args) -> dict[str, Any]:
    """``{"checkpoint": check(*args)}``, or ``{"refused": the sentence}`` of the UsageError it raised (sent to the other ranks, raised by all)."""
    try:
        return {"checkpoint": bool(check(*args))}
    except UsageError as exc:
        return {"refused": str(exc)}


def _is_run_file(name: str) -> bool:
    """Names `archviz train` writes in a run folder (and its temporaries and lock)."""
    if name in RUN_FILES + EXTRA_RUN_FILES + (LOCK_NAME,) or is_temp(name):
        return True  # below: the temporaries of archviz before issue 20, .NAME.RANDOM.tmp
    return name.startswith(".") and name.endswith(".tmp") and name[1:].split(".", 1)[0] in {n.split(".")[0] for n in RUN_FILES + EXTRA_RUN_FILES}


def _ours(out: Path, names: list[str]) -> set[str]:
    """The run files in ``out`` archviz can prove it wrote: config.json by its "archviz" key, the
    learning curve by its comment; the metrics files, which carry no mark, when config.json is
    archviz's; checkpoints are judged by ``checkpoint.load`` (and a run is never overwritten
    without --force). Symlinks never count: archviz writes run files as regular files."""
    ours = {LOCK_NAME} | {n for n in names if _is_run_file(n) and n.endswith((".tmp", ".pt"))}
    config = out / "config.json"
    if not config.is_symlink() and config.is_file():
        try:
            marked = json.loads(read_bounded(config, 2**20, "run configuration")).get("archviz") == RUN_MARK
        except (UsageError, ValueError, AttributeError):
            marked = False
        if marked:
            ours |= {"config.json", "metrics.json", "metrics.csv"}
    curve = out / "learning_curve.svg"
    if not curve.is_symlink() and head(curve, 200).startswith(CURVE_MARK.encode()):
        ours.add("learning_curve.svg")
    return {n for n in ours if n == LOCK_NAME or not (out / n).is_symlink()}


def prepare_out(out: Path, resume: bool, force: bool = False, locked: bool = True) -> bool:
    """Refuse to overwrite a run or the user's files; returns whether ``out`` holds a checkpoint.

    A folder holding only config.json (stopped before its first checkpoint: killed, two quick
    Ctrl-C, out of memory) is neither a run to refuse nor one to resume: it starts over, with
    --out or with --resume. ``locked``: the caller holds ``out``'s lock (the final check).
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory; choose a directory for the run.")
    has_checkpoint = (out / "last.pt").is_file()
    if resume:
        if not has_checkpoint and not (out / "config.json").is_file():
            raise UsageError(f"--resume {out}: there is no last.pt there to continue from.")
        for name in RUN_FILES + EXTRA_RUN_FILES:  # a link would make archviz write wherever it points
            if (out / name).is_symlink() or ((out / name).exists() and not (out / name).is_file()):
                raise UsageError(f"--resume {out}: {name} there is not a regular file (a link or a device); a run's files are plain files, remove it.")
        return has_checkpoint
    if not out.is_dir():
        return False
    try:
        names = sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise UsageError(f"cannot read --out {out} ({exc.strerror or exc}); choose a directory you can write to.") from None
    finished = [n for n in names if n in ("last.pt", "best.pt", "metrics.json")]
    if finished and not force:
        raise UsageError(f"--out {out} already holds a run; pass --resume {out} to continue it, choose another --out, or pass --force to start over.")
    ours = _ours(out, names)
    theirs = [n for n in names if n not in ours]
    if theirs and not force:
        raise UsageError(
            f"--out {out} holds files archviz did not write (e.g. {theirs[0]!r}); choose a new or empty directory, "
            f"or pass --force to write the run there (files named like run files would be replaced)."
        )
    if locked:
        links = [n for n in RUN_FILES + EXTRA_RUN_FILES if (out / n).is_symlink()]  # a run's files are written as plain files, never through a link
        for name in finished + [n for n in ("metrics.csv", "learning_curve.svg") if n in names] + links:  # --force: no stale files
            (out / name).unlink(missing_ok=True)
    return False


def write_config(out: Path, config: Any) -> None:
    """config.json: the full resolved recipe, marked as archviz's (``--resume`` reads it back)."""
    write_text_atomic(out / "config.json", json.dumps({**config.to_dict(), "archviz": RUN_MARK}, indent=2) + "\n")
