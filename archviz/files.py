"""How archviz touches the user's files: atomic writes, no silent overwrites, bounded reads, locks.

- Every file is written to a temporary name in the same directory, flushed to disk, then
  renamed over the target with ``os.replace`` (atomic on POSIX and Windows): a reader, a
  crash, Ctrl-C or a full disk leave either the previous complete file or the new complete
  file, never half of one and never a 0-byte file.
- A file archviz did not write is not replaced unless the user says so (``--force``);
  :func:`refuse_overwrite` decides, from the file's own content, whether it is archviz's.
- Inputs are read with a size limit, and only from regular files: ``/dev/zero``, a FIFO or a
  terminal are refused before a byte is read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from archviz.errors import RunError, UsageError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: bytes | Callable[[IO[bytes]], None]) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    RunError, in one sentence, when the write fails (full disk, no permission); the old file
    is then untouched and no temporary file is left behind.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; these are ordinary files
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes | bytearray | memoryview):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        kept = "the previous file is unchanged" if path.exists() else "nothing was written"
        raise RunError(f"cannot write {str(path)!r} ({exc.strerror or exc}); {kept}.") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def head(path: Path, n: int = 4096) -> bytes:
    """The first ``n`` bytes of a regular file (b"" for anything else or on error)."""
    try:
        if not path.is_file():
            return b""
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def head_and_tail(path: Path, n: int = 4096) -> bytes:
    """The first ``n`` bytes of a regular file, then its last ``n`` (a PDF names its producer at
    the end); b"" for anything else or on error."""
    try:
        if not path.is_file():
            return b""
        with open(path, "rb") as f:
            first = f.read(n)
            size = f.seek(0, os.SEEK_END)
            if size <= n:
                return first
            f.seek(max(n, size - n))
            return first + f.read(n)
    except OSError:
        return b""


def refuse_overwrite(path: Path, is_ours: Callable[[bytes], bool], force: bool, what: str = "") -> None:
    """UsageError if ``path`` exists, is not something archviz recognises as its own (judged by
    ``is_ours`` on its first and last 4 KiB) and ``force`` is off."""
    if force or not (path.exists() or path.is_symlink()):
        return
    if path.is_file() and is_ours(head_and_tail(path)):
        return
    raise UsageError(
        f"{str(path)!r} already exists and is not a file archviz recognises as its own{what}; move it away, choose another path, or pass --force to replace it."
    )


NOT_OURS = "already exists and is not a file archviz recognises as its own"

# The marks archviz leaves in the diagrams it writes, so that rerunning a command may replace
# them: SVG and DOT carry the graph's title already; a PNG gets text chunks after its header,
# a PDF names archviz as its producer.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SOFTWARE = b"Software\0archviz"
_PDF_PRODUCER = re.compile(rb"/Producer \((?:[^()\\]|\\.|\([^()]*\))*\)")
_PDF_OURS = b"/Producer (archviz)"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _png_title(title: str) -> bytes:
    # iTXt: keyword, compression flag and method, language, translated keyword, UTF-8 text
    return b"Title\0\0\0\0\0" + title.encode("utf-8")


def mark_png(data: bytes, title: str) -> bytes:
    """``data`` (a PNG) with ``Software: archviz`` and ``Title: title`` chunks right after IHDR."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return data
    end = 8 + 12 + int.from_bytes(data[8:12], "big")
    chunks = _png_chunk(b"tEXt", _PNG_SOFTWARE) + _png_chunk(b"iTXt", _png_title(title))
    return data[:end] + chunks + data[end:]


def mark_pdf(data: bytes) -> bytes:
    """``data`` (a PDF) with its /Producer set to archviz, padded with spaces to the same length so
    that no offset in the cross-reference table moves."""
    match = _PDF_PRODUCER.search(data)
    if match is None or len(match.group()) < len(_PDF_OURS):
        return data
    return data[: match.start()] + _PDF_OURS.ljust(len(match.group()), b" ") + data[match.end() :]


def html_mark(title: str) -> str:
    """The line in an interactive HTML diagram that names its graph (with ``<meta name="generator" content="archviz ...">``)."""
    import html

    from archviz.safe import printable

    return f'<meta name="archviz-graph" content="{html.escape(printable(title, newlines=False), quote=True)}">'


def graphviz_output_of(title: str) -> Callable[[bytes], bool]:
    """Recognises an SVG, DOT, PNG, PDF or HTML file archviz drew of the graph ``title`` (a PDF by its
    producer alone)."""
    svg_title = f"<!-- Title: {title} ".encode()
    html_marks = (b'<meta name="generator" content="archviz', html_mark(title).encode())
    png_marks = (_png_chunk(b"tEXt", _PNG_SOFTWARE), _png_chunk(b"iTXt", _png_title(title)))

    def check(first: bytes) -> bool:
        if first.startswith(PNG_SIGNATURE):
            return all(mark in first for mark in png_marks)
        if first.startswith(b"%PDF-"):
            return _PDF_OURS in first
        if first[:15].lower() == b"<!doctype html>":
            return all(mark in first for mark in html_marks)
        if b"Generated by graphviz" in first and svg_title in first:
            return True
        return first.startswith(f"digraph {_dot_id(title)} {{".encode())

    return check


def _dot_id(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---- reading --------------------------------------------------------------------------


def read_bounded(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; UsageError (one sentence) otherwise.

    The file is opened without blocking and checked with ``fstat`` before anything is read,
    so ``/dev/zero``, ``/dev/urandom``, a FIFO or a terminal are refused at once.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise UsageError(f"{what} {str(path)!r} does not exist.") from None
    except OSError as exc:
        raise UsageError(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc}).") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{what} {str(path)!r} is a directory, not a file.")
        if not stat.S_ISREG(info.st_mode):
            kind = _kind(info.st_mode)
            raise UsageError(f"{what} {str(path)!r} is {kind}, not a regular file; archviz reads only regular files.")
        if info.st_size > limit:
            raise UsageError(f"{what} {str(path)!r} is {info.st_size:,} bytes, more than the {limit:,} archviz reads; is it the right file?")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise UsageError(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc}).") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while we read it
        raise UsageError(f"{what} {str(path)!r} is more than the {limit:,} bytes archviz reads; is it the right file?")
    return data


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


# ---- locks ----------------------------------------------------------------------------

LOCK_NAME = ".archviz.lock"


@contextlib.contextmanager
def dir_lock(directory: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (a ``.archviz.lock`` file in it) for the block.

    The lock is ``flock``'s: the kernel drops it when the process dies, so a killed run
    never leaves a stale lock. UsageError at once if another process holds it.
    """
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UsageError(f"cannot write to {what} {directory} ({exc.strerror or exc}); choose a directory you can write to.") from None
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows: no flock; the directory checks still apply
            pass
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            pid = f" (pid {other})" if other.isdigit() else ""
            raise UsageError(f"{what} {directory} is in use by another archviz process{pid}; wait for it to finish or choose another directory.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
