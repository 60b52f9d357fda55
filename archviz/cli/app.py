"""The typer app and the error boundary every command goes through."""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import io
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import IO

import typer
from typer.core import TyperGroup

from archviz import compat
from archviz.errors import ArchvizError, ArchvizWarning


class _Group(TyperGroup):
    """Click's own usage errors (a bad --format, a missing ARCH) also become one line and exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except compat.NoArgsIsHelpError as exc:  # bare `archviz`: the help, as before
            print(exc.format_message())
            code = 2
        except compat.UsageError as exc:
            message = " ".join(exc.format_message().replace("Value error, ", "").split())
            where = f"; see `{exc.ctx.command_path} --help`" if exc.ctx else ""
            print(f"archviz: error: {message.rstrip('.')}{where}.", file=sys.stderr)
            code = exc.exit_code
        except compat.ClickException as exc:
            print(f"archviz: error: {exc.format_message()}", file=sys.stderr)
            code = exc.exit_code
        except compat.Abort:
            print("archviz: error: aborted.", file=sys.stderr)
            code = 1
        if not standalone_mode:
            return code
        code = code if isinstance(code, int) else 0
        if os.environ.get("TORCHELASTIC_RUN_ID") and "RANK" in os.environ:
            # A torchrun worker, its files written and closed: it skips the interpreter's teardown, where gloo's threads
            # now and then abort ("terminate called without an active exception", about 1 two-node run in 10-30 here),
            # which leaves the other node's torchrun waiting at its exit barrier.
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        sys.exit(code)


app = typer.Typer(
    cls=_Group,
    name="archviz",
    help=(
        "See inside convolutional networks before you train them: shapes, cost, diagrams, training.\n\n"
        "\b\nExamples:\n"
        "  archviz list\n"
        "  archviz shapes googlenet --input 1x1x96x96\n"
        "  archviz shapes vgg11 -p ratio=8 --depth 2\n"
        "  archviz cost vgg11 --input 64x1x224x224 --optimizer adam --budget 80GiB\n"
        "  archviz explain lenet --depth 2\n"
        "  archviz diagram googlenet -o googlenet.svg\n"
        "  archviz train lenet\n"
        "  archviz spec lenet > my_lenet.yaml && archviz shapes my_lenet.yaml"
    ),
    # Plain click help; usage errors are one line (see _Group).
    rich_markup_mode=None,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def fail(message: str, code: int) -> typer.Exit:
    """Print one sentence on stderr and return the Exit to raise."""
    from archviz.safe import printable

    print(f"archviz: error: {printable(message, newlines=False)}", file=sys.stderr)
    return typer.Exit(code)


def _warning_printer() -> Callable:
    """archviz's own warnings as one line on stderr, each once (stdout stays clean for --format json)."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, ArchvizWarning):
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
        elif str(message) not in shown:
            shown.add(str(message))
            print(f"archviz: warning: {message}", file=sys.stderr)

    return show


def _what(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


_inside: list[str] = []  # the command running in this process: archviz's CLI does not run inside itself


def _unexpected(exc: Exception) -> None:
    if os.environ.get("ARCHVIZ_DEBUG"):
        raise exc
    first = (str(exc).strip().splitlines() or [""])[0]
    raise fail(f"unexpected {type(exc).__name__}: {first} (set ARCHVIZ_DEBUG=1 to see the traceback).", 1) from None


class _MainThreadStdout(io.TextIOBase):
    """sys.stdout while archviz owns stdout: the main thread writes to the real stdout, any other thread to stderr."""

    def __init__(self, out: IO[str], err: IO[str]):
        self.out, self.err = out, err

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.out.encoding

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return (self.out if threading.current_thread() is threading.main_thread() else self.err).write(text)

    def flush(self) -> None:
        self.err.flush()
        self.out.flush()

    def fileno(self) -> int:
        return self.out.fileno()

    def isatty(self) -> bool:
        return self.out.isatty()


@contextlib.contextmanager
def own_stdout() -> Iterator[None]:
    """For ``--format json``: stdout carries archviz's JSON and nothing else, whatever user code does.

    File descriptor 1 is pointed at stderr for the rest of the process, so ``os.write(1, ...)``,
    ``sys.__stdout__``, C extensions and ``atexit`` handlers all land on stderr; archviz keeps a
    private copy of the real stdout, which only the main thread's ``print`` reaches, and only
    until the command returns (a late thread of the user's prints to stderr). Issue 20.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (CliRunner, a notebook): nothing to guard
        yield
        return
    if fd != 1:
        yield
        return
    sys.stdout.flush()
    real = os.fdopen(os.dup(1), "w", encoding=sys.stdout.encoding, errors=sys.stdout.errors, newline=None)
    os.dup2(2, 1)
    sys.stdout = _MainThreadStdout(real, sys.stderr)
    try:
        yield
    finally:
        sys.stdout = sys.stderr  # from now on (atexit, late threads) everything is stderr's
        try:
            real.flush()
        except OSError:  # a full disk or a closed pipe: drop what is still buffered, then say so
            os.dup2(os.open(os.devnull, os.O_WRONLY), real.fileno())
            raise


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that what is still buffered for it is dropped at exit (never stderr: own_stdout may have left it there)."""
    if sys.stdout is not sys.stderr:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class Stop(typer.Exit):
    """Leave with exit code ``code`` once the boundary has written ``output`` (e.g. an interrupted run's summary)."""

    def __init__(self, output: str, code: int):
        super().__init__(code)
        self.output = output


def _emit(output: str | bytes | None) -> None:
    """The one place a command's result reaches stdout: text (a newline added when it has none) or bytes (a PNG)."""
    if isinstance(output, bytes):
        sys.stdout.buffer.write(output)
    elif output is not None:
        sys.stdout.write(output if output.endswith("\n") else output + "\n")


def command(name: str, examples: list[str], **kwargs) -> Callable:
    """Register a command whose errors become one sentence on stderr and an exit code, never a traceback.

    The command returns what it prints (text, bytes or None); this boundary writes it, flushes, and turns
    a full disk into one sentence. ``examples`` are appended to the command's --help.
    """

    def decorator(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            if _inside:  # e.g. ARCH archviz.cli.app:app: a model's code ran archviz's own CLI
                raise RuntimeError(f"archviz {name} was run from inside archviz {_inside[0]}")
            _inside.append(name)
            try:
                with own_stdout() if str(kw.get("format", "")) == "json" else contextlib.nullcontext(), warnings.catch_warnings():
                    warnings.simplefilter("always", ArchvizWarning)
                    warnings.showwarning = _warning_printer()
                    output = None
                    try:
                        output = fn(*args, **kw)
                    except (ArchvizError, typer.Exit) as exc:  # an error or an exit may come with output (a partial diagram, a run's summary)
                        output = getattr(exc, "output", None)
                        raise
                    finally:
                        _emit(output)
                        sys.stdout.flush()  # a full disk under `> file` shows here, not as a warning at exit
                    return None
            except ArchvizError as exc:
                raise fail(str(exc), exc.exit_code) from None
            except BrokenPipeError:  # `archviz shapes ... | head`: the reader left, nothing is wrong
                _drop_stdout()
                raise typer.Exit(0) from None
            except KeyboardInterrupt:
                raise fail("interrupted.", 130) from None
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG) or os.environ.get("ARCHVIZ_DEBUG"):
                    return _unexpected(exc)
                _drop_stdout()  # drop what is still buffered
                raise fail(f"cannot write the output ({exc.strerror or exc}); free some space or write it elsewhere.", 1) from None
            except (typer.Exit, typer.Abort, SystemExit):
                raise
            except Exception as exc:  # a bug, or a user's module failing in an unexpected way
                return _unexpected(exc)
            except BaseException as exc:  # not an Exception (nor Ctrl-C or an exit): raised by the model's code
                if isinstance(exc, GeneratorExit) or os.environ.get("ARCHVIZ_DEBUG"):
                    raise
                raise fail(
                    f"{_what(exc)} was raised, a BaseException that is not an Exception, most likely by the model's code (set ARCHVIZ_DEBUG=1 to see where).",
                    1,
                ) from None
            finally:
                _inside.clear()

        doc = inspect.cleandoc(fn.__doc__ or "")
        wrapper.__doc__ = doc + "\n\n\b\nExamples:\n" + "\n".join(f"  {e}" for e in examples)
        return app.command(name, **kwargs)(wrapper)

    return decorator
