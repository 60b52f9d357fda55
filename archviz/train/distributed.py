"""Data parallelism with PyTorch's own engine: N processes, DistributedDataParallel, gloo on CPU, nccl on GPU.

``launch`` starts the processes itself (``torch.multiprocessing.spawn``), so
``archviz train ARCH --nproc 2`` needs no launcher; under ``torchrun`` the environment
it sets up is used instead (``from_env``). Each process trains on its own shard of
every epoch's shuffled order with batch ``batch_size // nproc``; DDP averages the
gradients, so the run behaves like one process with the global batch.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist

from archviz.errors import ArchvizError, RunError, UsageError


@dataclass(frozen=True)
class Dist:
    """This process's place in a data-parallel run (the single-process default is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def from_env() -> Dist | None:
    """The rank torchrun assigned this process, or None outside torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return None
    return Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))


def init(dist: Dist, device_type: str, init_method: str = "env://") -> None:
    """Join the process group: nccl for GPUs, gloo for CPUs."""
    if device_type == "cuda":
        torch.cuda.set_device(dist.local_rank)
    else:  # N processes share the cores instead of each starting one thread per core
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.world_size))
    backend = "nccl" if device_type == "cuda" else "gloo"
    torch_dist.init_process_group(backend, init_method=init_method, rank=dist.rank, world_size=dist.world_size, timeout=datetime.timedelta(minutes=10))


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all processes."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor)
    return tensor.tolist()


def all_gather(obj: Any, dist: Dist) -> list[Any]:
    """Every process's ``obj``, in rank order (a one-element list without distribution)."""
    if not dist.active:
        return [obj]
    out: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(out, obj)
    return out


def check_devices(nproc: int, device_type: str) -> None:
    if device_type == "cuda" and nproc > torch.cuda.device_count():
        raise UsageError(f"--nproc {nproc} needs {nproc} GPUs, one per process, but torch sees {torch.cuda.device_count()}.")


def launch(fn: Callable[..., Any], nproc: int, device_type: str, **kwargs: Any) -> Any:
    """Run ``fn(**kwargs, dist=Dist(rank, nproc, rank))`` in ``nproc`` fresh processes; rank 0's return value.

    Errors raised in a process come back as the same one-sentence ArchvizError.
    """
    import torch.multiprocessing as mp

    check_devices(nproc, device_type)
    port = _free_port()
    queue = mp.get_context("spawn").SimpleQueue()
    # Ctrl-C reaches every process of the terminal's group: the workers save a checkpoint
    # and return, so the launcher only waits for them.
    interrupted: list[bool] = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        mp.spawn(_worker, args=(fn, nproc, device_type, port, queue, kwargs), nprocs=nproc, join=True)
        failure = None
    except Exception as exc:
        failure = exc
    finally:
        signal.signal(signal.SIGINT, previous)
    messages = []
    while not queue.empty():
        messages.append(queue.get())
    for kind, payload in messages:
        if kind == "error":
            raise payload[0](payload[1])
    for kind, payload in messages:
        if kind == "result":  # rank 0 finished (a late Ctrl-C may still have hit another process)
            return payload
    if interrupted:
        raise KeyboardInterrupt
    detail = str(failure).strip().splitlines()[-1] if failure else "no result came back"
    raise RunError(f"a training process failed: {detail}.")


def _worker(rank: int, fn: Callable[..., Any], nproc: int, device_type: str, port: int, queue: Any, kwargs: dict[str, Any]) -> None:
    dist = Dist(rank, nproc, rank)
    try:
        init(dist, device_type, f"tcp://127.0.0.1:{port}")
        result = fn(**kwargs, dist=dist)
    except ArchvizError as exc:
        error_class = exc.__class__ if exc.__class__ in (UsageError, RunError) else RunError
        queue.put(("error", (error_class, str(exc))))
        raise SystemExit(exc.exit_code) from None
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # done: a late Ctrl-C must not turn success into a failure
    if dist.is_main:
        queue.put(("result", result))
    torch_dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
