"""Data parallelism with PyTorch's own engine: DistributedDataParallel, gloo on CPU, nccl on GPU.

Two ways in, one code path once the processes exist:

- ``archviz train ARCH --nproc N`` starts N workers on this machine with torch's elastic
  launcher (``torch.distributed.launcher.api.elastic_launch``, what ``torchrun`` runs): a
  c10d rendezvous whose store binds port 0, so no free port is guessed and raced for;
- under ``torchrun`` (one node or several), torchrun is the launcher and each process reads
  its rank from the environment it set up (``from_env``).

Each process trains on its own shard of every epoch's shuffled order with batch
``batch_size // world_size``; DDP averages the gradients, so the run behaves like one
process with the global batch. Rank 0 alone reads and writes the run directory.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist

from archviz.errors import ArchvizError, RunError, UsageError

# Bounds on waiting for the other processes: a peer that died or never came must end the
# run with a message, not hang it. Collectives (an epoch's all-reduce, a checkpoint's
# gather) get COLLECTIVE_TIMEOUT; the workers of `--nproc` join within JOIN_TIMEOUT.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)
JOIN_TIMEOUT_S = 120


@dataclass(frozen=True)
class Dist:
    """This process's place in a data-parallel run (the single-process default is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # processes on this machine (they share its cores)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def env_int(name: str, default: int) -> int:
    """A whole number torchrun set in the environment (WORLD_SIZE, RANK, ...); UsageError for anything else."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise UsageError(f"the environment variable {name}={raw[:40]!r} is not a whole number; torchrun sets it, so unset it or start the run with torchrun.")
    return int(text)


def from_env() -> Dist | None:
    """The rank torchrun (or ``--nproc``'s launcher) assigned this process, or None outside one."""
    world_size = env_int("WORLD_SIZE", 1)
    if world_size <= 1 or "RANK" not in os.environ:
        return None
    rank = env_int("RANK", 0)
    if rank >= world_size:
        raise UsageError(f"the environment says RANK={rank} in a run of WORLD_SIZE={world_size}; ranks go from 0 to {world_size - 1}.")
    return Dist(rank, world_size, env_int("LOCAL_RANK", 0), env_int("LOCAL_WORLD_SIZE", world_size))


def init(dist: Dist, device_type: str) -> None:
    """Join the process group the launcher prepared (env://): nccl for GPUs, gloo for CPUs."""
    if device_type == "cuda":
        torch.cuda.set_device(dist.local_rank)
    else:  # the processes of one machine share its cores instead of each starting one thread per core
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.local_world_size))
    backend = "nccl" if device_type == "cuda" else "gloo"
    torch_dist.init_process_group(backend, init_method="env://", rank=dist.rank, world_size=dist.world_size, timeout=COLLECTIVE_TIMEOUT)


def leave() -> None:
    """Leave the process group ``init`` joined (no-op if it was never joined)."""
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all processes."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor)
    return tensor.tolist()


# What processes send each other is plain data: JSON text (numbers, strings, lists, dicts) in a
# uint8 tensor, with tensors as {"__tensor__": dtype, "shape": [...], "hex": bytes}. Never a
# pickle (all_gather_object and broadcast_object_list unpickle what any peer sends: a process
# that joins the run as rank 1 could run code on rank 0; issue 20).
MAX_MESSAGE_BYTES = 64 * 2**20
_DTYPES = {str(t).removeprefix("torch."): t for t in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float32, torch.float64, torch.bool)}


def encode(obj: Any) -> bytes:
    """``obj`` (tensors and plain data) as JSON bytes; TypeError for anything else."""

    def plain(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().contiguous()
            dtype = str(value.dtype).removeprefix("torch.")
            if dtype not in _DTYPES:
                raise TypeError(f"a {dtype} tensor cannot be sent between processes")
            return {"__tensor__": dtype, "shape": list(value.shape), "hex": value.numpy().tobytes().hex()}
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if value is None or isinstance(value, str | int | float | bool):
            return value
        raise TypeError(f"a {type(value).__name__} cannot be sent between processes (plain data and tensors only)")

    return json.dumps(plain(obj), allow_nan=True).encode()


def decode(data: bytes) -> Any:
    """What ``encode`` made; ValueError for anything else (a peer that is not archviz)."""

    def tensor(d: dict) -> Any:
        if "__tensor__" not in d:
            return d
        dtype = _DTYPES.get(d["__tensor__"])
        if dtype is None or not isinstance(d.get("shape"), list) or not isinstance(d.get("hex"), str):
            raise ValueError("a malformed tensor")
        raw = bytearray(bytes.fromhex(d["hex"]))
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return flat.reshape([int(n) for n in d["shape"]]).clone()

    return json.loads(data.decode(), object_hook=tensor)


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch_dist.get_backend() == "nccl" else torch.device("cpu")


def all_gather(obj: Any, dist: Dist) -> list[Any]:
    """Every process's ``obj`` (tensors and plain data), in rank order (a one-element list without distribution)."""
    if not dist.active:
        return [obj]
    device = _device()
    payload = encode(obj)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(dist.world_size)]
    torch_dist.all_gather(sizes, torch.tensor([len(payload)], dtype=torch.int64, device=device))
    longest = max(int(n.item()) for n in sizes)
    if longest > MAX_MESSAGE_BYTES:
        raise RunError(f"a training process sent {longest:,} bytes, more than the {MAX_MESSAGE_BYTES:,} archviz accepts; is every process archviz's?")
    mine = torch.zeros(longest, dtype=torch.uint8, device=device)
    mine[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)  # JSON: never empty
    gathered = [torch.empty(longest, dtype=torch.uint8, device=device) for _ in range(dist.world_size)]
    torch_dist.all_gather(gathered, mine)
    out = []
    for rank, (data, size) in enumerate(zip(gathered, sizes, strict=True)):
        try:
            out.append(decode(data[: int(size.item())].cpu().numpy().tobytes()))
        except (ValueError, UnicodeDecodeError, RuntimeError):
            raise RunError(f"training process {rank} sent something that is not archviz's plain data; is every process an archviz train of this run?") from None
    return out


def load_on_every_rank(path: Path, dist: Dist, load: Callable[[Path], Any]) -> Any:
    """``load(path)`` on rank 0, and on every other rank ``load`` of the same bytes, sent by rank 0.

    Only rank 0 needs the run directory (the other nodes of a multi-node run may not see
    it). The bytes travel as a uint8 tensor and each rank reads them with ``load``
    (``checkpoint.load``: weights_only), so nothing is unpickled off the wire.
    """
    if not dist.active:
        return load(path)
    device = torch.device("cuda", dist.local_rank) if torch_dist.get_backend() == "nccl" else torch.device("cpu")
    if dist.is_main:
        state = load(path)  # its errors first, in rank 0's words; the launcher then stops the others
        payload = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8).to(device)
        torch_dist.broadcast(torch.tensor([payload.numel()], dtype=torch.int64, device=device), src=0)
        torch_dist.broadcast(payload, src=0)
        return state
    size = torch.zeros(1, dtype=torch.int64, device=device)
    torch_dist.broadcast(size, src=0)
    payload = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    torch_dist.broadcast(payload, src=0)
    with tempfile.TemporaryDirectory(prefix="archviz-resume-") as tmp:
        copy = Path(tmp) / path.name
        copy.write_bytes(payload.cpu().numpy().tobytes())
        return load(copy)


def same_everywhere(what: dict[str, Any], dist: Dist) -> None:
    """Refuse to train when the processes disagree on what defines the run (seed, data, batch...).

    Every rank must see the same data order; under torchrun each node parses its own
    command line, so a different --seed or --limit-train on one node would silently train
    on overlapping shards.
    """
    if not dist.active:
        return
    seen = all_gather(what, dist)
    for rank, theirs in enumerate(seen):
        diff = sorted(k for k in what if theirs.get(k) != seen[0].get(k))
        if diff:
            names = ", ".join(f"{k} ({seen[0].get(k)!r} on rank 0, {theirs.get(k)!r} on rank {rank})" for k in diff)
            raise UsageError(f"the processes of this run disagree on {names}; start every node with the same arguments and data.")


def check_devices(nproc: int, device_type: str) -> None:
    if device_type == "cuda" and nproc > torch.cuda.device_count():
        raise UsageError(f"--nproc {nproc} needs {nproc} GPUs, one per process, but torch sees {torch.cuda.device_count()}.")


def launch(fn: Callable[..., Any], nproc: int, device_type: str, **kwargs: Any) -> Any:
    """Run ``fn(**kwargs, dist=...)`` in ``nproc`` processes started by torch's elastic launcher; rank 0's return value.

    An ArchvizError raised in a process comes back as the same one-sentence error; a
    process that crashes or is killed becomes a RunError naming it. Either way the
    launcher stops the other processes at once (no restarts: a training run is not elastic).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    check_devices(nproc, device_type)
    # Loopback only: a single-machine run must not be reachable from the network (issue 20: the
    # launcher's stores listened on every interface). TCPStore binds all interfaces unless handed
    # a socket (master_listen_fd), so archviz binds 127.0.0.1 itself: the rendezvous store here,
    # the process group's store in worker 0 (``_worker``); gloo/nccl use the loopback interface.
    rdzv_store = loopback_store(0)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"archviz-{uuid.uuid4().hex}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"{LOOPBACK}:{rdzv_store.port}",  # the store above (multi-tenant: the launcher's TCPStore reuses it)
        rdzv_configs={"join_timeout": JOIN_TIMEOUT_S},
        local_addr=LOOPBACK,
        max_restarts=0,
        start_method="spawn",
        # Ctrl-C and SIGTERM are left to the workers: each saves a checkpoint and returns (see loop.Interrupt).
        signals_to_handle="SIGHUP,SIGQUIT",
    )
    with tempfile.TemporaryDirectory(prefix="archviz-launch-") as errors_dir, _launcher_quiet() as interrupted, _loopback_env():
        try:
            results = elastic_launch(config, _worker)(fn, device_type, errors_dir, kwargs, True)
        except ChildFailedError as exc:
            if interrupted:
                raise KeyboardInterrupt from None
            raise failure(exc, Path(errors_dir), nproc) from None
        except Exception as exc:  # the launcher itself: the rendezvous, starting or watching the processes
            if os.environ.get("ARCHVIZ_DEBUG"):
                raise
            raise RunError(f"the launcher of the {nproc} training processes failed: {_one_line(exc)}.") from None
    if results.get(0) is None:
        raise KeyboardInterrupt if interrupted else RunError("the training processes ended without a result.")
    return results[0]


def failure(exc: Any, errors_dir: Path, nproc: int) -> ArchvizError:
    """One sentence for a failed launch (``exc``: the launcher's ChildFailedError).

    The cause, in this order: a process's own ArchvizError (the others then fail in a
    collective or are stopped); a process that died without a word (a signal, os._exit),
    which also makes its peers' collectives fail; an unexpected exception.
    """
    reports = {}
    for file in errors_dir.glob("rank-*.json"):
        try:
            report = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        reports[report["rank"]] = report
    ours = sorted((r for r in reports.values() if r["kind"] in ("usage", "run")), key=lambda r: (r["time"], r["rank"]))
    if ours:
        return (UsageError if ours[0]["kind"] == "usage" else RunError)(ours[0]["message"])
    silent = [(rank, process) for rank, process in exc.failures.items() if rank not in reports and process.exitcode not in (0, 130)]
    if silent:  # SIGTERM last: it is what the launcher sends the survivors
        rank, process = min(silent, key=lambda item: (item[1].exitcode == -signal.SIGTERM, item[0]))
        how = f"was killed by {process.signal_name()}" if process.exitcode < 0 else f"exited with code {process.exitcode}"
        return RunError(f"training process {rank} of {nproc} {how}; the others were stopped.")
    if reports:
        first = min(reports.values(), key=lambda r: (r["time"], r["rank"]))
        return RunError(f"training process {first['rank']} of {nproc} failed: {first['message']} (set ARCHVIZ_DEBUG=1 to see the traceback).")
    return RunError(f"the {nproc} training processes stopped without a result.")


def _worker(fn: Callable[..., Any], device_type: str, errors_dir: str, kwargs: dict[str, Any], loopback: bool = False) -> Any:
    """One process of ``launch``: join the group, train, hand rank 0's result back."""
    dist = from_env()
    if dist is None:
        raise RuntimeError("started without the launcher's RANK/WORLD_SIZE")
    os.environ[_LAUNCHED] = "1"
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the launcher turns SIGTERM into one SIGINT for every worker
    try:
        if loopback and dist.rank == 0:  # the process group's store, on 127.0.0.1 (init_process_group reuses it)
            loopback_store(int(os.environ["MASTER_PORT"]), dist.world_size)
        init(dist, device_type)
        result = fn(**kwargs, dist=dist)
    except ArchvizError as exc:
        _report(errors_dir, dist.rank, "usage" if isinstance(exc, UsageError) else "run", str(exc))
        raise SystemExit(exc.exit_code) from None  # quietly: the launcher stops the others
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        _report(errors_dir, dist.rank, "bug", f"{type(exc).__name__}: {_one_line(exc)}")
        if os.environ.get("ARCHVIZ_DEBUG"):
            raise
        raise SystemExit(1) from None
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # done: a late Ctrl-C or SIGTERM must not turn success into a failure
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    leave()
    return result if dist.is_main else None


_LAUNCHED = "ARCHVIZ_LAUNCHED_WORKER"


def launched_here() -> bool:
    """Whether this process is a worker ``launch`` started (not torchrun's)."""
    return os.environ.get(_LAUNCHED) == "1"


def _interrupt_workers() -> None:
    """Send SIGINT, once, to this process's children (the workers of ``launch``): SIGTERM sent to
    the launcher alone, or to the whole process group, stops the run like one Ctrl-C."""
    try:
        children = {int(pid) for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()}
    except OSError:  # not Linux: the signal reaches the workers only when sent to the process group
        return
    for pid in children:
        try:
            os.kill(pid, signal.SIGINT)
        except OSError:
            pass


LOOPBACK = "127.0.0.1"
_kept: list[Any] = []  # stores created here live as long as the process


def loopback_store(port: int, world_size: int | None = None) -> Any:
    """A TCPStore server listening on 127.0.0.1 only (``port`` 0: a free one), multi-tenant so that
    torch's own ``TCPStore(is_master=True)`` on the same port in this process reuses it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise RunError(f"cannot listen on {LOOPBACK}:{port} for the training processes ({exc.strerror or exc}).") from None
    port = sock.getsockname()[1]
    store = torch_dist.TCPStore(
        LOOPBACK, port, world_size, is_master=True, multi_tenant=True, wait_for_workers=False, timeout=COLLECTIVE_TIMEOUT, master_listen_fd=sock.detach()
    )
    _kept.append(store)
    return store


@contextmanager
def _loopback_env() -> Iterator[None]:
    """While ``launch`` runs: the workers make their own store (worker 0 binds it to 127.0.0.1)
    instead of sharing one the launcher would open on every interface, and gloo/nccl talk over
    the loopback interface."""
    loop = next((name for _, name in socket.if_nameindex() if name.startswith("lo")), "lo") if hasattr(socket, "if_nameindex") else "lo"
    settings = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", "GLOO_SOCKET_IFNAME": loop, "NCCL_SOCKET_IFNAME": loop}
    before = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _report(errors_dir: str, rank: int, kind: str, message: str) -> None:
    path = Path(errors_dir) / f"rank-{rank}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"rank": rank, "kind": kind, "message": message, "time": time.time()}))
    tmp.replace(path)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[-1].rstrip(".") if lines else type(exc).__name__


@contextmanager
def _launcher_quiet() -> Iterator[list[bool]]:
    """While the launcher runs: its log lines off (failures become one sentence), Ctrl-C noted, not raised.

    The launcher installs its own handlers for SIGTERM/SIGHUP/SIGQUIT and sets an
    environment variable; both are put back afterwards.
    """
    interrupted: list[bool] = []
    handled = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]
    previous = {sig: signal.getsignal(sig) for sig in handled}  # None: set outside Python, left alone
    env_before = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))

    def terminated(*_: Any) -> None:
        if not interrupted:
            _interrupt_workers()
        interrupted.append(True)

    signal.signal(signal.SIGTERM, terminated)
    logging.disable(logging.CRITICAL)
    try:
        yield interrupted
    finally:
        logging.disable(logging.NOTSET)
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
        if env_before is None:
            os.environ.pop("TORCHELASTIC_SIGNALS_TO_HANDLE", None)
        else:
            os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = env_before
