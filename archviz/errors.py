"""Errors a user can cause, each carrying one sentence and the exit code the CLI uses,
and how an exception raised in a user's code becomes one."""

import os
import sys
import traceback


class ArchvizError(Exception):
    """Base class: the message is shown to the user as is, without a traceback.

    ``output``: what the command still writes to stdout before the message (a partial diagram).
    """

    exit_code = 1
    output: str | bytes | None = None


class UsageError(ArchvizError):
    """Bad input from the user (arguments, spec files, parameters): exit code 2."""

    exit_code = 2


class RunError(ArchvizError):
    """A valid request that cannot run (e.g. input too small for the network): exit code 1.

    A forward pass that raised at a layer sets ``partial`` (the trace up to that layer, whose
    last op, ``failed_op``, is the layer that failed): `archviz diagram` still draws it.
    """

    exit_code = 1
    partial: object = None
    failed_op: str = ""


class NeedsValues(RunError):
    """The meta device cannot run the model (it reads tensor values): the message offers ``--compute``,
    which traces with real tensors; ``problem`` is the sentence without that advice, for a command
    that has no ``--compute`` (``archviz cost``: its memory simulation runs without values)."""

    def __init__(self, message: str, problem: str):
        super().__init__(message)
        self.problem = problem


class TooLarge(RunError):
    """A tensor too large to size (more than 2^53 elements, or 2^63 bytes for torch): no memory
    budget can hold it, so a batch-size search treats it as not fitting."""


class ArchvizWarning(UserWarning):
    """Something that runs but is probably not what was meant; the CLI shows it as one line on stderr."""


def raised_text(exc: BaseException) -> str:
    """``ValueError: its first line``: how an exception from a user's code is named in one sentence."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def show_traceback(exc: BaseException) -> None:
    """With ARCHVIZ_DEBUG=1, the traceback of an error archviz is about to turn into one sentence."""
    if os.environ.get("ARCHVIZ_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)


def constructor_error(name: str, exc: BaseException) -> ArchvizError:
    """One sentence for an exception raised while a user's (or torchvision's) constructor ran."""
    if isinstance(exc, ArchvizError):
        return exc
    show_traceback(exc)
    if isinstance(exc, SystemExit):
        return RunError(f"{name} called sys.exit({exc.code!r}) while building the model; archviz cannot inspect a model that ends the program.")
    return RunError(f"{name} raised {raised_text(exc)} while building the model (in its constructor, not in archviz).")
