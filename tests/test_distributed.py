"""`archviz train` on PyTorch's launcher, on the CPU with gloo and the real Fashion-MNIST.

- `--nproc 2` starts its workers with torch's elastic launcher (``elastic_launch``);
- `torchrun` with two nodes of one process each, on 127.0.0.1 with a c10d rendezvous,
  gives the same numbers as one node with two processes, and resumes a run.

Runs are tiny (LeNet, 1,000 images, batch 100, one thread per process). Every child
process is bounded in time and killed with its whole process group when it overruns, so
a hung rendezvous fails the test instead of hanging CI.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from archviz.errors import RunError, UsageError
from archviz.train import checkpoint, distributed, loop
from archviz.train.recipes import make_config

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--limit-train", "1000", "--limit-test", "500", "--batch-size", "100", "--threads", "1"]
TIMEOUT_S = 180  # two nodes together: 5-25 s on the shared 2-core machine; a hung rendezvous ends at join_timeout (30 s); a worker that died in teardown (fixed: cli/app.py) left torchrun at its exit barrier past this


def metrics(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "metrics.json").read_text())


def numbers(records: list[dict]) -> list[tuple]:
    return [(r["epoch"], r["loss"], r["train_acc"], r["test_acc"]) for r in records]


def env() -> dict[str, str]:
    """The children import this checkout's archviz, and tests/data for `dist_models:...`."""
    paths = [str(ROOT), str(ROOT / "tests" / "data"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def start(args: list[str]) -> subprocess.Popen:
    # A session of its own, so a timeout kills the launcher and every worker it started.
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), start_new_session=True)


def finish(process: subprocess.Popen, deadline: float) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{process.args} ran over {TIMEOUT_S} s:\n{stdout}\n{stderr}")
    return process.returncode, stdout, stderr


def two_nodes(store_port: int, *args: str) -> list[tuple[int, str, str]]:
    """`torchrun --nnodes 2 --nproc-per-node 1 ... -m archviz ARGS` twice, as two nodes on 127.0.0.1.

    The test holds the rendezvous store (bound to port 0 by the kernel, so no port is
    guessed); both nodes join it as clients (is_host=0) and give up after join_timeout,
    and both are killed, with their workers, TIMEOUT_S after they started.
    """
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{store_port}", "--rdzv-id", uuid.uuid4().hex]
    rendezvous += ["--rdzv-conf", "is_host=0,join_timeout=30", "--local-addr", "127.0.0.1"]
    deadline = time.monotonic() + TIMEOUT_S
    nodes = [start([*torchrun, *rendezvous, "-m", "archviz", *args]) for _ in range(2)]
    return [finish(node, deadline) for node in nodes]


@contextmanager
def alarm(seconds: int):
    """Bound an in-process launch: SIGALRM raises in the launcher's wait, and the launcher stops its workers."""

    def overran(signum, frame):
        raise TimeoutError(f"ran over {seconds} s")

    previous = signal.signal(signal.SIGALRM, overran)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True)
def bounded():
    with alarm(2 * TIMEOUT_S):
        yield


@pytest.fixture(autouse=True, scope="module")
def keep_threads():
    """loop.run sets torch's thread count in this process (--threads 1): later test files measure with the default."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def store():
    """A c10d TCPStore for the two-node rendezvous, on a port the kernel picked."""
    from torch.distributed import TCPStore

    return TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=datetime.timedelta(seconds=60))


@pytest.fixture(scope="module")
def one_node_two_processes(tmp_path_factory):
    """`--nproc 2` (elastic_launch), 2 epochs: the reference for the torchrun runs."""
    out = tmp_path_factory.mktemp("nproc") / "run"
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    with alarm(2 * TIMEOUT_S):  # a module fixture: set up before `bounded`
        result = loop.run(make_config("lenet", epochs=2, limit_train=1000, limit_test=500, batch_size=100, nproc=2, threads=1, out=str(out)))
    # The launcher put back the parent's signal handlers and environment.
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert "TORCHELASTIC_SIGNALS_TO_HANDLE" not in os.environ
    return out, result


def test_nproc_2_runs_on_the_elastic_launcher_and_matches_one_process(one_node_two_processes, tmp_path):
    out, result = one_node_two_processes
    assert result.world_size == 2 and [r.epoch for r in result.records] == [1, 2]
    assert json.loads((out / "config.json").read_text())["nproc"] == 2
    assert checkpoint.load(out / "last.pt")["epoch"] == 2 and len(checkpoint.load(out / "last.pt")["ranks"]) == 2
    # LeNet has no batch norm, so 2 processes x batch 50 average to the gradients of batch 100.
    single = loop.run(make_config("lenet", epochs=1, limit_train=1000, limit_test=500, batch_size=100, threads=1, out=str(tmp_path / "one")))
    (ddp, _), one = metrics(out), single.records[0]
    assert ddp["loss"] == pytest.approx(one.loss, abs=1e-3)
    assert ddp["train_acc"] == pytest.approx(one.train_acc, abs=0.01)
    assert ddp["test_acc"] == pytest.approx(one.test_acc, abs=0.01)


@pytest.mark.slow
def test_two_nodes_match_one_node_and_resume_under_torchrun(one_node_two_processes, store, tmp_path):
    reference, _ = one_node_two_processes
    out = tmp_path / "two-nodes"
    node_0, node_1 = two_nodes(store.port, "train", "lenet", *TINY, "--epochs", "1", "--out", str(out))
    assert node_0[0] == 0 and node_1[0] == 0, node_0[2] + node_1[2]
    # Rank 0 alone speaks and writes: one node printed the run, the other nothing.
    printed = sorted((node_0[1], node_1[1]), key=len)
    assert printed[0] == "" and "batch 100 over 2 processes" in printed[1] and printed[1].count("\nepoch 1, loss") == 1
    # Same shards, same order, same all-reduce: 2 nodes x 1 process == 1 node x 2 processes, to the last digit.
    assert numbers(metrics(out)) == numbers(metrics(reference))[:1]
    assert json.loads((out / "config.json").read_text())["nproc"] == 2

    # Resume on the launcher: rank 0 reads last.pt and sends it to the other node.
    node_0, node_1 = two_nodes(store.port, "train", "--resume", str(out), "--epochs", "2")
    assert node_0[0] == 0 and node_1[0] == 0, node_0[2] + node_1[2]
    assert numbers(metrics(out)) == numbers(metrics(reference))
    resumed, straight = checkpoint.load(out / "last.pt"), checkpoint.load(reference / "last.pt")
    assert resumed["model"].keys() == straight["model"].keys()
    assert all(torch.equal(resumed["model"][k], straight["model"][k]) for k in straight["model"])


@pytest.mark.slow
def test_a_killed_worker_is_one_sentence(tmp_path, capfd):
    config = make_config(
        "dist_models:dies_on_rank_1", epochs=1, limit_train=1000, limit_test=500, batch_size=100, nproc=2, threads=1, out=str(tmp_path / "run")
    )
    with pytest.raises(RunError) as error:
        loop.run(config)
    assert str(error.value) == "training process 1 of 2 was killed by SIGKILL; the others were stopped."
    out, err = capfd.readouterr()  # the workers' and the launcher's output, at the file-descriptor level
    assert "Traceback" not in out + err and err == ""
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.slow
def test_an_error_in_the_workers_keeps_its_words_and_exit_code(tmp_path, capfd):
    config = make_config("lenet", ["num_classes=4"], epochs=1, limit_train=1000, limit_test=500, batch_size=100, nproc=2, threads=1, out=str(tmp_path / "run"))
    with pytest.raises(UsageError) as error:
        loop.run(config)
    assert str(error.value) == "lenet outputs shape [2, 4] for a batch of 2, but Fashion-MNIST needs [2, 10]; pass -p num_classes=10."
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and err == ""


def test_nproc_cannot_contradict_torchrun(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, stderr = cli("train", "lenet", "--nproc", "3", "--out", str(tmp_path / "run"))
    assert code == 2
    assert stderr.strip() == "archviz: error: --nproc 3 under torchrun, which started 2 processes (--nnodes x --nproc-per-node); drop --nproc."
    assert not (tmp_path / "run").exists()


def test_processes_that_disagree_on_the_run_are_refused(monkeypatch):
    """Each node parses its own command line: a different --seed would silently overlap the shards."""
    mine = {"seed": 0, "epochs": 2, "train images": 1000}
    monkeypatch.setattr(distributed, "all_gather", lambda obj, dist: [obj, {**obj, "seed": 1}])
    with pytest.raises(UsageError) as error:
        distributed.same_everywhere(mine, distributed.Dist(0, 2))
    assert str(error.value) == ("the processes of this run disagree on seed (0 on rank 0, 1 on rank 1); start every node with the same arguments and data.")
    monkeypatch.setattr(distributed, "all_gather", lambda obj, dist: [obj, dict(obj)])
    distributed.same_everywhere(mine, distributed.Dist(0, 2))  # agreeing processes pass


def test_the_cause_of_a_failed_launch_comes_first(tmp_path):
    """A process's own error beats a silent death, which beats the collective errors it causes in its peers."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def report(rank: int, kind: str, message: str, time: float) -> None:
        (tmp_path / f"rank-{rank}.json").write_text(json.dumps({"rank": rank, "kind": kind, "message": message, "time": time}))

    def failed(*exitcodes: int) -> ChildFailedError:
        return ChildFailedError("_worker", {rank: ProcessFailure(rank, 1000 + rank, code, str(tmp_path / "none")) for rank, code in enumerate(exitcodes)})

    assert str(distributed.failure(failed(-9, 1), tmp_path, 2)) == "training process 0 of 2 was killed by SIGKILL; the others were stopped."
    assert str(distributed.failure(failed(-15, 3), tmp_path, 2)) == "training process 1 of 2 exited with code 3; the others were stopped."
    report(1, "bug", "RuntimeError: Connection closed by peer", 2.0)
    assert str(distributed.failure(failed(-9, 1), tmp_path, 2)) == "training process 0 of 2 was killed by SIGKILL; the others were stopped."
    assert str(distributed.failure(failed(-15, 1), tmp_path, 2)) == "training process 0 of 2 was killed by SIGTERM; the others were stopped."
    report(0, "bug", "RuntimeError: boom", 1.0)
    assert str(distributed.failure(failed(1, 1), tmp_path, 2)) == (
        "training process 0 of 2 failed: RuntimeError: boom (set ARCHVIZ_DEBUG=1 to see the traceback)."
    )
    report(1, "run", "out of memory on cuda:1 training lenet", 3.0)
    error = distributed.failure(failed(1, 1), tmp_path, 2)
    assert type(error).__name__ == "RunError" and str(error) == "out of memory on cuda:1 training lenet"


def test_the_global_batch_must_split_evenly():
    """DDP weighs every process's gradient equally, so 100 images over 3 processes cannot be one batch of 100."""
    with pytest.raises(UsageError) as error:
        make_config("lenet", batch_size=100, nproc=3, out="unused")
    assert str(error.value) == "--batch-size 100 is the global batch and does not split evenly over 3 processes; use 99 or 102."
    with pytest.raises(UsageError, match=r"over 2 processes; use 2\.$"):
        make_config("lenet", batch_size=1, nproc=2, out="unused")
    assert make_config("lenet", batch_size=102, nproc=3, out="unused").batch_size == 102
