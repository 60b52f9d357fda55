"""The typer app and the error boundary every command goes through."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable

import typer

from archviz.errors import ArchvizError

app = typer.Typer(
    name="archviz",
    help=(
        "See inside convolutional networks before you train them: shapes, cost, diagrams, training.\n\n"
        "\b\nExamples:\n"
        "  archviz list\n"
        "  archviz shapes googlenet --input 1x1x96x96\n"
        "  archviz shapes vgg11 -p ratio=8 --depth 2\n"
        "  archviz cost vgg11 --input 64x1x224x224 --optimizer adam --budget 80GiB\n"
        "  archviz diagram googlenet -o googlenet.svg\n"
        "  archviz train lenet\n"
        "  archviz spec lenet > my_lenet.yaml && archviz shapes my_lenet.yaml"
    ),
    # Plain click output: usage errors stay a short plain message instead of a box.
    rich_markup_mode=None,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def fail(message: str, code: int) -> typer.Exit:
    """Print one sentence on stderr and return the Exit to raise."""
    print(f"archviz: error: {message}", file=sys.stderr)
    return typer.Exit(code)


def command(name: str, examples: list[str], **kwargs) -> Callable:
    """Register a command whose errors become one sentence on stderr and an exit code, never a traceback.

    ``examples`` are appended to the command's --help.
    """

    def decorator(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            try:
                return fn(*args, **kw)
            except ArchvizError as exc:
                raise fail(str(exc), exc.exit_code) from None
            except BrokenPipeError:  # `archviz shapes ... | head`: the reader left, nothing is wrong
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(0) from None
            except KeyboardInterrupt:
                raise fail("interrupted.", 130) from None
            except (typer.Exit, typer.Abort, SystemExit):
                raise
            except Exception as exc:  # a bug, or a user's module failing in an unexpected way
                if os.environ.get("ARCHVIZ_DEBUG"):
                    raise
                raise fail(f"unexpected {type(exc).__name__}: {exc} (set ARCHVIZ_DEBUG=1 to see the traceback).", 1) from None

        doc = inspect.cleandoc(fn.__doc__ or "")
        wrapper.__doc__ = doc + "\n\n\b\nExamples:\n" + "\n".join(f"  {e}" for e in examples)
        return app.command(name, **kwargs)(wrapper)

    return decorator
