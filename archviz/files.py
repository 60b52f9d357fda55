"""How archviz touches the user's files: atomic writes, no silent overwrites, bounded reads, locks.

- Every file is written to a temporary name in the same directory, flushed to disk, then
  renamed over the target with ``os.replace`` (atomic on POSIX and Windows): a reader, a
  crash, Ctrl-C or a full disk leave either the previous complete file or the new complete
  file, never half of one and never a 0-byte file.
- A file archviz did not write is not replaced unless the user says so (``--force``);
  :func:`refuse_overwrite` decides by archviz's own mark in the file (see ``mark``), never by a
  guess from its content. Symlinks are followed; devices, FIFOs and sockets are written in
  place, never replaced; a replaced file keeps its permissions. docs/trust.md says the same.
- Temporaries carry the writing process's id, so the next write removes a killed one's.
- Inputs are read with a size limit, and only from regular files: ``/dev/zero``, a FIFO or a
  terminal are refused before a byte is read.
"""

from __future__ import annotations

import contextlib
import errno
import json
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


# Temporary files are ``.archviz-PID-NAME.RANDOM.tmp`` next to their target: a process killed
# mid-write (kill -9, power loss) leaves one behind, and the next write into that directory
# removes those whose process is gone (issue 20).
TMP_PREFIX = ".archviz-"
_TMP = re.compile(r"^\.archviz-(\d+)-.*\.tmp$")


def is_temp(name: str) -> bool:
    """Whether ``name`` is one of archviz's temporary files."""
    return _TMP.match(name) is not None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def clean_stale_temps(directory: Path) -> list[Path]:
    """Remove archviz temporaries in ``directory`` whose writing process has died; the paths removed."""
    removed = []
    try:
        names = [e.name for e in os.scandir(directory) if e.name.startswith(TMP_PREFIX)]
    except OSError:
        return removed
    for name in names:
        match = _TMP.match(name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                (directory / name).unlink()
                removed.append(directory / name)
    return removed


def _target(path: Path) -> tuple[Path, os.stat_result | None]:
    """Where a write to ``path`` lands, and what is there now.

    Symlinks are followed, deliberately: writing to a link writes the file it points to and
    the link stays a link (what ``>`` in a shell does). A dangling link creates its target.
    """
    try:
        info = os.stat(path)  # follows links
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise RunError(f"cannot write {str(path)!r} ({exc.strerror or exc}).") from None
    if path.is_symlink() and (info is None or stat.S_ISREG(info.st_mode)):
        path = Path(os.path.realpath(path))
    return path, info


def write_atomic(path: str | Path, data: bytes | Callable[[IO[bytes]], None]) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    - a regular file is replaced by renaming a complete temporary over it, keeping its
      permission bits (a 0600 file stays 0600) and, where allowed, its owner;
    - a device, FIFO or socket (``/dev/null``, ``/dev/stdout``, a link to ``/proc/self/fd/1``)
      is written in place: it is never replaced by a regular file;
    - a symlink is followed (see ``_target``).

    RunError, in one sentence, when the write fails (full disk, no permission); the old file
    is then untouched and no temporary file is left behind.
    """
    write_all_atomic({Path(path): data})


def write_all_atomic(items: dict[Path, bytes | Callable[[IO[bytes]], None]]) -> None:
    """Write several files, all or none: every one is first written in full to a temporary, then
    all are renamed into place (a rename needs no space), so a full disk leaves none of them
    changed. RunError in one sentence otherwise, as ``write_atomic``."""
    staged: list[tuple[str, Path]] = []
    in_place = []
    try:
        for path, data in items.items():
            target, info = _target(Path(path))
            if info is not None and stat.S_ISDIR(info.st_mode):
                raise RunError(f"cannot write {str(target)!r}: it is a directory.")
            if info is not None and not stat.S_ISREG(info.st_mode):
                in_place.append((target, data))
                continue
            staged.append((_stage(target, info, data), target))
        for tmp, target in staged:
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise RunError(f"cannot write {str(target)!r} ({exc.strerror or exc}).") from None
    except BaseException as exc:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, RunError) and len(items) > 1:
            raise RunError(f"{str(exc).split('; ')[0]}; none of the {len(items)} files was written or changed.") from None
        raise
    for target, data in in_place:
        _write_in_place(target, data)


def _stage(path: Path, info: os.stat_result | None, data: bytes | Callable[[IO[bytes]], None]) -> str:
    """A complete temporary copy of ``data`` next to ``path``, with ``path``'s permissions; its name."""
    clean_stale_temps(path.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{path.name}.", suffix=".tmp", dir=path.parent)
        if info is None:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; a new file is an ordinary one
        else:
            os.chmod(tmp, stat.S_IMODE(info.st_mode))
            if (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(OSError):  # root writing a user's file: it stays theirs
                    os.chown(tmp, info.st_uid, info.st_gid)
        with os.fdopen(fd, "wb") as f:
            _fill(f, data)
            f.flush()
            os.fsync(f.fileno())
        done, tmp = tmp, None
        return done
    except OSError as exc:
        kept = "the previous file is unchanged" if path.exists() else "nothing was written"
        raise RunError(f"cannot write {str(path)!r} ({exc.strerror or exc}); {kept}.") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _fill(f: IO[bytes], data: bytes | Callable[[IO[bytes]], None]) -> None:
    if isinstance(data, bytes | bytearray | memoryview):
        f.write(data)
    else:
        data(f)


def _write_in_place(path: Path, data: bytes | Callable[[IO[bytes]], None]) -> None:
    try:
        with open(path, "wb") as f:
            _fill(f, data)
    except OSError as exc:
        raise RunError(f"cannot write {str(path)!r} ({exc.strerror or exc}).") from None


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

# The marks archviz leaves in the files it writes, so that rerunning a command may replace them,
# and nothing else: a mark, never a guess from content (issue 20: a user's own graphviz drawing
# of a graph called lenet was taken for archviz's). SVG: an XML comment before graphviz's own;
# DOT: a first-line comment; PNG: text chunks after its header; PDF: archviz as its producer;
# JSON: an "archviz" key; Markdown: an HTML comment.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SOFTWARE = b"Software\0archviz"
_PDF_PRODUCER = re.compile(rb"/Producer \((?:[^()\\]|\\.|\([^()]*\))*\)")
_PDF_OURS = b"/Producer (archviz)"
_SVG_AFTER = b"<!-- Generated by graphviz"


def mark(title: str) -> str:
    """The text of archviz's mark for a drawing of ``title``: one line, no ``--`` (XML comments forbid it)."""
    return "archviz diagram " + json.dumps(title).replace("--", "-\\u002d")


def mark_svg(data: bytes, title: str) -> bytes:
    """``data`` (graphviz's SVG) with archviz's mark as a comment before graphviz's own."""
    at = data.find(_SVG_AFTER)
    if at < 0:
        return data
    return data[:at] + f"<!-- {mark(title)} -->\n".encode() + data[at:]


def mark_dot(source: str, title: str) -> str:
    """DOT ``source`` with archviz's mark as a first-line comment."""
    return f"// {mark(title)}\n{source}"


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
    """Recognises an SVG, DOT, PNG, PDF or HTML file archviz drew of the graph ``title``, by archviz's
    mark (a PDF by its producer alone)."""
    svg_mark = f"<!-- {mark(title)} -->\n{_SVG_AFTER.decode()}".encode()
    dot_mark = f"// {mark(title)}\n".encode()
    html_marks = (b'<meta name="generator" content="archviz', html_mark(title).encode())
    png_marks = (_png_chunk(b"tEXt", _PNG_SOFTWARE), _png_chunk(b"iTXt", _png_title(title)))

    def check(first: bytes) -> bool:
        if first.startswith(PNG_SIGNATURE):
            return all(m in first[:4096] for m in png_marks)
        if first.startswith(b"%PDF-"):
            return _PDF_OURS in first
        if first[:15].lower() == b"<!doctype html>":
            return all(m in first for m in html_marks)
        if first.startswith(b"<?xml"):
            return svg_mark in first[:4096]
        return first.startswith(dot_mark)

    return check


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
def dir_lock(directory: Path, what: str, shared: bool = False) -> Iterator[None]:
    """Hold a lock on ``directory`` (a ``.archviz.lock`` file in it) for the block.

    Exclusive for a process that writes the run (train, --resume); ``shared`` for one that
    only reads it (evaluate): readers exclude a writer, not each other. The lock is
    ``flock``'s: the kernel drops it when the process dies, so a killed run never leaves a
    stale lock. UsageError at once if it cannot be had.
    """
    path = directory / LOCK_NAME
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    if shared and not (path.exists() or (directory / "config.json").exists()):  # not a run folder: leave no lock file behind
        yield
        return
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | nofollow, 0o666)
        except OSError:
            if not shared:
                raise
            fd = os.open(path, os.O_RDONLY | nofollow)  # a reader of a folder it may not write
    except OSError as exc:
        if shared:  # a read-only folder with no lock file: no archviz process can be training there
            yield
            return
        raise UsageError(f"cannot write to {what} {directory} ({exc.strerror or exc}); choose a directory you can write to.") from None
    try:
        try:
            import fcntl

            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except ImportError:  # Windows: no flock; the directory checks still apply
            pass
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            pid = f" (pid {other})" if other.isdigit() else ""
            if shared:
                raise UsageError(f"{what} {directory} is being trained by another archviz process{pid}; evaluate it when that run stops.") from None
            raise UsageError(f"{what} {directory} is in use by another archviz process{pid}; wait for it to finish or choose another directory.") from None
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
