"""Fashion-MNIST as four uint8/int64 tensors, and batches made from them on the training device.

The seed's loader resizes every image with PIL inside a DataLoader; on a GPU that caps
training at a few thousand images/s (REFERENCE.md). Here the whole dataset (47 MB as
uint8) sits on the training device, and a batch is one gather, one normalisation and
one ``F.interpolate`` there.
"""

from __future__ import annotations

import errno
import functools
import gzip
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from archviz.errors import RunError, UsageError

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train_X": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_X": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
SIZES = {"train": 60_000, "test": 10_000}
MAX_IDX_BYTES = 64 * 2**20  # the largest file, train-images, is 47,040,016 bytes unpacked
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
# Mean and standard deviation of the training pixels in [0, 1] (measured over all 60,000).
MEAN, STD = 0.2860, 0.3530


@dataclass(frozen=True)
class FashionMNIST:
    """Images as uint8 [N, 28, 28], labels as int64 [N], on one device."""

    train_X: torch.Tensor
    train_y: torch.Tensor
    test_X: torch.Tensor
    test_y: torch.Tensor
    source: str  # the directory the files came from

    def to(self, device: torch.device | str) -> FashionMNIST:
        move = functools.partial(torch.Tensor.to, device=device, non_blocking=True)
        return FashionMNIST(move(self.train_X), move(self.train_y), move(self.test_X), move(self.test_y), self.source)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.train_X, self.train_y, self.test_X, self.test_y))

    def limit(self, train: int | None, test: int | None) -> FashionMNIST:
        """The first ``train`` / ``test`` images (views, no copies)."""
        return FashionMNIST(self.train_X[:train], self.train_y[:train], self.test_X[:test], self.test_y[:test], self.source)


def cache_dir() -> Path:
    """Where ``--download`` puts the files (torchvision's layout under it)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "archviz"


def search_path(data_dir: str | None = None) -> list[tuple[str, Path]]:
    """Candidate directories in the order they are tried, each with where it came from."""
    places = []
    if data_dir:
        places.append(("--data-dir", Path(data_dir)))
    if os.environ.get("ARCHVIZ_DATA"):
        places.append(("$ARCHVIZ_DATA", Path(os.environ["ARCHVIZ_DATA"])))
    places.append(("download cache", cache_dir() / "FashionMNIST" / "raw"))
    places.append(("Debian's dataset-fashion-mnist", DEBIAN_DIR))
    return places


def missing_message(data_dir: str | None = None) -> str:
    tried = ", ".join(str(path) for _, path in search_path(data_dir))
    return (
        f"Fashion-MNIST was not found (looked in {tried}); get it with `apt install dataset-fashion-mnist`, "
        f"or pass --download when online, or point --data-dir or $ARCHVIZ_DATA at a folder holding "
        f"train-images-idx3-ubyte[.gz] and the three other IDX files."
    )


def find_files(directory: Path) -> dict[str, Path] | None:
    """The four files in ``directory`` (or its torchvision ``FashionMNIST/raw``), raw or .gz; None if any is missing."""
    for folder in (directory, directory / "FashionMNIST" / "raw"):
        found = {}
        for key, stem in FILES.items():
            for name in (stem, f"{stem}.gz"):
                if (folder / name).is_file():
                    found[key] = folder / name
                    break
        if len(found) == len(FILES):
            return found
    return None


def load_fashion_mnist(data_dir: str | None = None, download: bool = False) -> FashionMNIST:
    """Find and read Fashion-MNIST (see ``search_path``); RunError when missing, corrupt or truncated."""
    for origin, directory in search_path(data_dir):
        files = find_files(directory)
        if files is not None:
            for path in files.values():
                if path.stat().st_size > MAX_IDX_BYTES:
                    raise RunError(f"{path} is {path.stat().st_size:,} bytes, more than any Fashion-MNIST file; it is not one.")
            stamps = tuple(sorted((k, str(p), p.stat().st_size, p.stat().st_mtime_ns) for k, p in files.items()))
            return _read(stamps, str(directory))
        if origin == "--data-dir" and download:  # --download puts the files where --data-dir says
            return _download(directory)
        if origin in ("--data-dir", "$ARCHVIZ_DATA") and not download:
            # A folder the user named explicitly is not silently skipped.
            raise UsageError(f"{origin} {directory} holds no Fashion-MNIST files; it needs {', '.join(FILES.values())} (raw or .gz).")
    if download:
        return _download(cache_dir())
    raise RunError(missing_message(data_dir))


def _download(root: Path) -> FashionMNIST:
    """Download into ``root`` (torchvision's layout: ``root/FashionMNIST/raw``)."""
    from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

    try:
        for train in (True, False):
            TorchvisionFashionMNIST(str(root), train=train, download=True)
    except Exception as exc:  # URLError, HTTPError, checksum RuntimeError, ...
        reason = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise RunError(
            f"downloading Fashion-MNIST into {root} failed ({reason[-1]}); check the connection, or get it with "
            f"`apt install dataset-fashion-mnist`, or point --data-dir at a folder holding the four IDX files."
        ) from None
    return load_fashion_mnist(str(root / "FashionMNIST" / "raw"))


@functools.lru_cache(maxsize=2)
def _read(files: tuple[tuple[str, str, int, int], ...], source: str) -> FashionMNIST:
    """Read the four tensors; cached per process by (path, size, mtime), and never modified in place."""
    from archviz.compat import read_image_file, read_label_file

    tensors = {}
    with tempfile.TemporaryDirectory(prefix="archviz-fmnist-") as tmp:
        for key, path, _, _ in files:
            reader = read_image_file if key.endswith("_X") else read_label_file
            try:
                tensors[key] = reader(_raw(Path(path), Path(tmp)))
            except RunError:
                raise
            except (AssertionError, RuntimeError, ValueError, TypeError, EOFError, OSError, gzip.BadGzipFile, zlib.error) as exc:
                if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise RunError(f"no space left in {tempfile.gettempdir()} to unpack {path} ({exc.strerror}); free some space or set TMPDIR.") from None
                reason = (str(exc).strip().splitlines() or ["bad header"])[0]
                raise RunError(f"{path} is corrupt or truncated ({type(exc).__name__}: {reason}); delete it and get the file again.") from None
    for split, n in SIZES.items():
        X, y = tensors[f"{split}_X"], tensors[f"{split}_y"]
        if tuple(X.shape) != (n, 28, 28) or tuple(y.shape) != (n,) or int(y.min()) < 0 or int(y.max()) > 9:
            raise RunError(
                f"the Fashion-MNIST {split} files in {source} hold images {list(X.shape)} and labels {list(y.shape)}, "
                f"not {n} 28x28 images with labels 0-9; they are corrupt or not Fashion-MNIST."
            )
    return FashionMNIST(tensors["train_X"], tensors["train_y"], tensors["test_X"], tensors["test_y"], source)


def _raw(path: Path, tmp: Path) -> str:
    """torchvision's IDX readers take an uncompressed file: gunzip .gz files into ``tmp``."""
    if path.suffix != ".gz":
        return str(path)
    target = tmp / path.stem
    written = 0
    with gzip.open(path, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > MAX_IDX_BYTES:  # a .gz that unpacks to gigabytes is not Fashion-MNIST
                raise RunError(f"{path} unpacks to more than {MAX_IDX_BYTES:,} bytes; it is not a Fashion-MNIST file.")
            dst.write(chunk)
    return str(target)


def prepare(X: torch.Tensor, resize: int, channels: int = 1, channels_last: bool = False) -> torch.Tensor:
    """uint8 [B, 28, 28] -> normalised float32 [B, channels, resize, resize] on X's device."""
    X = X.unsqueeze(1).to(torch.float32)  # the one copy; everything after is in place or resizes
    X.sub_(MEAN * 255).mul_(1 / (STD * 255))
    if resize != X.shape[-1]:
        X = F.interpolate(X, size=(resize, resize), mode="bilinear", align_corners=False)
    if channels > 1:  # grayscale into an RGB network (torchvision models)
        X = X.expand(-1, channels, -1, -1)
    if channels_last:
        X = X.contiguous(memory_format=torch.channels_last)
    return X


def epoch_order(n: int, seed: int, epoch: int, world_size: int = 1, rank: int = 0) -> torch.Tensor:
    """This process's shuffled indices for ``epoch``: a function of (seed, epoch) only, so a resumed
    run and every data-parallel process agree without sharing generator state."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator)
    order = order[: n - n % world_size]  # equal shards: every process takes the same number of steps
    return order[rank::world_size]


def batches(
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    resize: int,
    *,
    order: torch.Tensor | None = None,
    start: int = 0,
    channels: int = 1,
    channels_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(X, y) batches from batch number ``start``: rows ``order`` (shuffled training) or in order (testing).

    A last batch of a single image is dropped: batch norm cannot train on one image.
    """
    n = len(order) if order is not None else len(X)
    if order is not None:
        order = order.to(X.device, non_blocking=True)
    for i in range(start * batch_size, n, batch_size):
        if n - i == 1 and i > 0:
            break
        if order is None:
            X_batch, y_batch = X[i : i + batch_size], y[i : i + batch_size]
        else:  # index_select: ~15x faster than X[rows] advanced indexing on a CPU (measured here)
            rows = order[i : i + batch_size]
            X_batch, y_batch = X.index_select(0, rows), y.index_select(0, rows)
        yield prepare(X_batch, resize, channels, channels_last), y_batch


def num_batches(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (rest > 1 or (rest == 1 and full == 0))
