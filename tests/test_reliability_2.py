"""The second hardening pass (issue 20), organised by promise like tests/test_reliability.py; docs/trust.md states them.

1. Bad input gets one sentence on stderr and exit code 2 (bad usage) or 1 (a run that failed).
2. Files are the user's: archviz replaces only files carrying its own mark.
4. No code named in a data file (a run's config.json, a checkpoint) is ever imported.
5. Every input is bounded in time and memory, while it is expanded.
6. Output is what it says: --format json stdout is pure JSON, the Python API leaves the model alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from archviz import files
from archviz.train import checkpoint

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
TINY = ["--limit-train", "1000", "--limit-test", "500", "--batch-size", "100", "--threads", "1", "--epochs", "1"]


def one_sentence(stderr: str) -> str:
    # notes and signs of life ("building X ...", after a second on a loaded machine) are not errors
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("note: ") and not line.endswith(" ...")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("archviz: error: ") and "Traceback" not in stderr and "unexpected" not in stderr, stderr
    return lines[0]


def archviz(*args: str, timeout: float = 60, cwd: Path | None = None, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{DATA}", **(env or {})}
    full.pop("PYTHONUNBUFFERED", None)  # users do not export it
    return subprocess.run([sys.executable, "-m", "archviz", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full, **kw)


@pytest.fixture(scope="module")
def callable_run(tmp_path_factory) -> Path:
    """A tiny run of usermodels:tiny_cnn (a module:callable ARCH the user named on the command line)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = archviz("train", "usermodels:tiny_cnn", *TINY, "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    return out


def _rewrite_arch(run: Path, dest: Path, arch: str, params: list[str]) -> Path:
    """A copy of ``run`` whose config.json and checkpoints name ``arch`` (what a hostile folder would hold)."""
    dest.mkdir()
    for name in ("config.json", "last.pt", "best.pt", "metrics.json"):
        data = (run / name).read_bytes()
        if name == "config.json":
            config = json.loads(data)
            config.update(arch=arch, params=params, out=str(dest))
            (dest / name).write_text(json.dumps(config))
        elif name.endswith(".pt"):
            state = torch.load(run / name, weights_only=True)
            state["config"].update(arch=arch, params=params)
            torch.save(state, dest / name)
        else:
            (dest / name).write_bytes(data)
    return dest


# ---- 4. no code named in a data file is ever imported ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate", "resume"])
@pytest.mark.parametrize("arch", ["subprocess:getoutput", "os:system", "sideeffect_module:make"])
def test_a_callable_named_in_a_run_folder_is_refused_not_run(callable_run, tmp_path, command, arch):
    marker = tmp_path / "marker"
    (tmp_path / "sideeffect_module.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef make():\n    return None\n")
    run = _rewrite_arch(callable_run, tmp_path / "run", arch, [f"cmd=touch {marker}"])
    args = ["evaluate", str(run), "--limit-test", "100"] if command == "evaluate" else ["train", "--resume", str(run), "--epochs", "2"]
    result = archviz(*args, cwd=tmp_path, env={"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"})
    line = one_sentence(result.stderr)
    assert result.returncode == 2, result.stderr
    assert f"names the Python callable {arch!r}" in line and "--trust-code" in line
    assert not marker.exists()


@pytest.mark.slow
def test_a_callable_the_user_names_or_trusts_is_loaded(callable_run, tmp_path):
    run = _rewrite_arch(callable_run, tmp_path / "run", "usermodels:tiny_cnn", [])
    for extra in (["--arch", "usermodels:tiny_cnn"], ["--trust-code"]):
        result = archviz("evaluate", str(run), "--limit-test", "100", "--format", "json", *extra)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["num_images"] == 100
    # naming another callable is not the same run
    result = archviz("evaluate", str(run), "--limit-test", "100", "--arch", "usermodels:shared_model")
    assert result.returncode == 2 and one_sentence(result.stderr) == (
        f"archviz: error: {run / 'best.pt'} is a run of usermodels:tiny_cnn, not usermodels:shared_model; drop --arch or name usermodels:tiny_cnn."
    )


def test_only_module_callables_count_as_code():
    assert checkpoint.names_code("os:system") and checkpoint.names_code("pkg.mod:Cls.make")
    assert not checkpoint.names_code("torchvision:resnet18")  # torchvision's constructors, not user code
    assert not checkpoint.names_code("lenet") and not checkpoint.names_code("runs/my:net.yaml")


def test_processes_exchange_json_not_pickles():
    from archviz.train import distributed

    state = {"rng": torch.get_rng_state(), "partial": {"sums": [1.5, float("nan"), 3.0], "seconds": 2.0}, "ok": True, "n": None}
    back = distributed.decode(distributed.encode(state))
    assert torch.equal(back["rng"], state["rng"]) and back["rng"].dtype == torch.uint8 and back["rng"].shape == (5056,)
    assert back["partial"]["sums"][0] == 1.5 and back["partial"]["sums"][2] == 3.0 and back["ok"] is True and back["n"] is None
    with pytest.raises(TypeError, match="cannot be sent"):
        distributed.encode({"x": object()})
    import pickle

    with pytest.raises((ValueError, UnicodeDecodeError)):  # what all_gather_object would have run
        distributed.decode(pickle.dumps(print))
    source = Path(distributed.__file__).read_text()
    assert "all_gather_object(" not in source and "broadcast_object_list(" not in source and "import pickle" not in source


def _listening(pids: set[int]) -> list[str]:
    """Local addresses of the TCP sockets listening in ``pids`` (from /proc: no ss needed)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                found.append(cols[1])
    return found


def _group(pgid: int) -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.add(int(entry))
            except OSError:
                pass
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_nproc_listens_on_the_loopback_address_only(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "archviz", "train", "lenet", "--nproc", "2", *TINY, "--epochs", "3", "--out", str(tmp_path / "run")]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            seen += _listening(_group(process.pid))
            time.sleep(0.2)
        assert process.wait(timeout=120) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert len(set(seen)) >= 2  # the rendezvous store and the process group's store at least
    loopback = ("0100007F:", "00000000000000000000000001000000:")  # 127.0.0.1, ::1 as /proc/net writes them
    assert [a for a in set(seen) if not a.startswith(loopback)] == []


# ---- 3. a stop is a checkpoint: SIGTERM is Ctrl-C ------------------------------------------------


def _numbers(run: Path) -> list[tuple]:
    return [(r["epoch"], r["loss"], r["train_acc"], r["test_acc"]) for r in json.loads((run / "metrics.json").read_text())]


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2])
def test_sigterm_writes_a_checkpoint_and_resume_is_exact(tmp_path, nproc):
    """SIGTERM to archviz's own process (with --nproc 2: the launcher alone, which stops its workers like one Ctrl-C)."""
    args = ["lenet", "--limit-train", "6000", "--limit-test", "500", "--batch-size", "50", "--threads", "1", "--epochs", "2", "--device", "cpu"]
    args += ["--nproc", str(nproc)]
    straight = archviz("train", *args, "--out", str(tmp_path / "straight"), timeout=600)
    assert straight.returncode == 0, straight.stderr
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONUNBUFFERED", None)
    run = tmp_path / "stopped"
    process = subprocess.Popen(
        [sys.executable, "-m", "archviz", "train", *args, "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout.readline().startswith("training lenet")  # the loop has started
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and f"archviz train --resume {run}" in stdout
    state = torch.load(run / "last.pt", weights_only=True)
    assert (state["epoch"], state["batch"]) != (0, 0) and state["epoch"] < 2  # stopped part-way, where it was
    resumed = archviz("train", "--resume", str(run), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _numbers(run) == _numbers(tmp_path / "straight")


# ---- 2. files are the user's: only archviz's mark counts ----------------------------------------

needs_dot = pytest.mark.skipif(__import__("shutil").which("dot") is None, reason="graphviz's dot program is not installed")


@needs_dot
@pytest.mark.parametrize(
    "name, content",
    [
        ("lenet.svg", None),  # the user's own graphviz drawing of a graph called lenet
        ("lenet.dot", b'digraph "lenet" {\n  a -> b\n}\n'),  # a hand-written DOT file of that name
    ],
)
def test_a_users_drawing_of_the_same_name_is_kept(cli, tmp_path, monkeypatch, name, content):
    monkeypatch.chdir(tmp_path)
    if content is None:
        content = subprocess.run(["dot", "-Tsvg"], input=b'digraph "lenet" { a -> b }', capture_output=True, check=True).stdout
        assert b"<!-- Title: lenet " in content and b"Generated by graphviz" in content  # what the old check took for archviz's
    (tmp_path / name).write_bytes(content)
    code, _, stderr = cli("diagram", "lenet", "-f", name.split(".")[1])
    assert code == 2 and one_sentence(stderr) == (
        f"archviz: error: {name!r} already exists and is not a file archviz recognises as its own "
        "(it is the default output name; give -o PATH to write elsewhere); move it away, choose another path, or pass --force to replace it."
    )
    assert (tmp_path / name).read_bytes() == content
    assert cli("diagram", "lenet", "-f", name.split(".")[1], "--force")[0] == 0
    assert cli("diagram", "lenet", "-f", name.split(".")[1])[0] == 0  # archviz's own, marked: replaced without --force
    assert (tmp_path / name).read_bytes().startswith(b'// archviz diagram "lenet"\n' if name.endswith(".dot") else b"<?xml")


def test_symlinks_are_followed_and_permissions_kept(cli, tmp_path):
    user = tmp_path / "mine.dot"
    user.write_text("old")
    user.chmod(0o600)
    link = tmp_path / "link.dot"
    link.symlink_to(user)
    assert cli("diagram", "lenet", "-o", str(link))[0] == 0  # -o names it: replaced by design, through the link
    assert link.is_symlink() and os.readlink(link) == str(user)
    assert user.read_text().startswith('// archviz diagram "lenet"\ndigraph "lenet" {')
    assert oct(user.stat().st_mode & 0o777) == oct(0o600)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_devices_fifos_and_stdout_links_are_written_in_place(tmp_path):
    null_link = tmp_path / "null.dot"
    null_link.symlink_to("/dev/null")
    result = archviz("diagram", "lenet", "-o", str(null_link))
    assert result.returncode == 0, result.stderr
    assert null_link.is_symlink() and Path("/dev/null").is_char_device()
    out_link = tmp_path / "out.dot"
    out_link.symlink_to("/proc/self/fd/1")
    result = archviz("diagram", "lenet", "-o", str(out_link))
    assert result.returncode == 0 and out_link.is_symlink(), result.stderr
    assert result.stdout.startswith('// archviz diagram "lenet"\ndigraph "lenet" {')  # the diagram went to stdout
    fifo = tmp_path / "pipe.dot"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    result = archviz("diagram", "lenet", "-o", str(fifo))
    got = reader.communicate(timeout=30)[0]
    assert result.returncode == 0 and fifo.is_fifo() and got.startswith(b"// archviz diagram"), result.stderr


def test_a_killed_writes_temporaries_are_cleaned_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".archviz-{dead}-x.svg.abc123.tmp"
    live = tmp_path / f".archviz-{os.getppid()}-y.svg.def456.tmp"  # a process still writing: kept
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    files.write_atomic(tmp_path / "z.txt", b"data")
    assert not stale.exists() and live.exists() and (tmp_path / "z.txt").read_bytes() == b"data"


@pytest.mark.parametrize("name, content", [("config.json", b'{"arch": "mine"}\n'), ("metrics.csv", b"a,b\n1,2\n"), ("learning_curve.svg", b"<svg/>")])
def test_train_keeps_a_users_file_named_like_a_run_file(cli, tmp_path, name, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(content)
    code, _, stderr = cli("train", "lenet", *TINY, "--out", str(out))
    assert code == 2 and one_sentence(stderr) == (
        f"archviz: error: --out {out} holds files archviz did not write (e.g. {name!r}); choose a new or empty directory, "
        "or pass --force to write the run there (files named like run files would be replaced)."
    )
    assert (out / name).read_bytes() == content


@pytest.mark.slow
def test_a_run_folders_own_files_are_recognised_and_links_refused(callable_run, tmp_path):
    config = json.loads((callable_run / "config.json").read_text())
    assert config["archviz"] == "run configuration written by archviz train"
    assert (callable_run / "learning_curve.svg").read_text().startswith("<!-- archviz learning curve")
    run = tmp_path / "run"
    __import__("shutil").copytree(callable_run, run)
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").symlink_to(tmp_path / "victim.csv")
    result = archviz("train", "usermodels:tiny_cnn", "--resume", str(run), "--epochs", "2")
    assert result.returncode == 2 and one_sentence(result.stderr) == (
        f"archviz: error: --resume {run}: metrics.csv there is not a regular file (a link or a device); a run's files are plain files, remove it."
    )
    assert not (tmp_path / "victim.csv").exists()


@pytest.mark.parametrize("command", ["resume", "evaluate"])
def test_the_run_lock_covers_resume_and_evaluate(cli, callable_run, command):
    with files.dir_lock(callable_run, "--out"):  # a training in progress (flock: another open file refuses)
        args = (
            ["train", "usermodels:tiny_cnn", "--resume", str(callable_run), "--epochs", "2"]
            if command == "resume"
            else ["evaluate", str(callable_run), "--arch", "usermodels:tiny_cnn"]
        )
        code, _, stderr = cli(*args)
    busy = {
        "resume": "is in use by another archviz process (pid {pid}); wait for it to finish or choose another directory.",
        "evaluate": "is being trained by another archviz process (pid {pid}); evaluate it when that run stops.",
    }[command]
    assert code == 2 and one_sentence(stderr) == f"archviz: error: the run folder {callable_run} " + busy.format(pid=os.getpid())


# ---- 6. output is what it says ------------------------------------------------------------------

NOISY = """
import atexit, os, sys, threading, time
from torch import nn

atexit.register(print, "atexit print")


def chatter():
    for _ in range(200):
        print("thread print")
        time.sleep(0.005)


threading.Thread(target=chatter, daemon=True).start()


def net():
    os.write(1, b"raw write\\n")
    print("dunder stdout", file=sys.__stdout__)
    print("plain print")
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
"""


@pytest.mark.parametrize("command", ["shapes", "cost"])
def test_json_stdout_stays_pure_whatever_user_code_prints(tmp_path, command):
    (tmp_path / "noisy.py").write_text(NOISY)
    result = archviz(command, "noisy:net", "--input", "1x4", "--format", "json", env={"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # nothing else on stdout
    assert report["arch"] == "noisy:net"
    for line in ("atexit print", "thread print", "raw write", "dunder stdout", "plain print"):
        assert line in result.stderr


class _Counting(torch.nn.Module):
    """A forward that changes its module: what compute=True must never do to the user's model."""

    def __init__(self, lazy: bool):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
        self.lazy = torch.nn.LazyLinear(3) if lazy else torch.nn.Linear(32, 3)  # a meta trace cannot copy a lazy layer

    def forward(self, X):
        self.calls += 1
        return self.lazy(X)


def _state(model: torch.nn.Module) -> tuple:
    return (
        {k: (v.clone() if not isinstance(v, torch.nn.parameter.UninitializedTensorMixin) else "lazy") for k, v in model.state_dict().items()},
        [(n, p.requires_grad, p.dtype, p.device, type(p).__name__) for n, p in model.named_parameters()],
        [(n, m.training, len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()],
    )


@pytest.mark.parametrize("compute", [False, True])
def test_the_python_api_never_changes_the_model(compute):
    import archviz

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Dropout(0.3), torch.nn.Flatten(), _Counting(lazy=compute))
    model[0].weight.requires_grad_(False)
    model.register_forward_hook(lambda *args: None)
    model.train()
    before = _state(model)
    report = archviz.summary(model, (2, 1, 6, 6), compute=compute)
    assert report.outputs[0]["shape"] == [2, 3]
    after = _state(model)
    assert after[1:] == before[1:]
    assert before[0].keys() == after[0].keys() and (before[0]["4.lazy.weight"] == "lazy" == after[0]["4.lazy.weight"] or not compute)
    assert all(torch.equal(v, after[0][k]) for k, v in before[0].items() if not isinstance(v, str))
    assert int(model[4].calls) == 0


def test_csv_cells_a_spreadsheet_would_run_are_neutralised_and_markdown_escapes_html(cli, tmp_path):
    evil = "=cmd|' /C calc'!A0"
    spec = tmp_path / "evil.yaml"
    spec.write_text(
        "name: evil\ndefault_input: 1x1x8x8\nlayers:\n"
        f"  - conv: {{out: 2, kernel: 3, name: {json.dumps(evil)}}}\n"
        "  - conv: {out: 2, kernel: 3, name: '+1+2'}\n  - conv: {out: 2, kernel: 1, name: '@SUM(A1)'}\n"
        "  - flatten: {name: '<script>alert(1)</script>'}\n"
    )
    code, stdout, stderr = cli("shapes", str(spec), "--depth", "2", "--format", "csv")
    assert code == 0, stderr
    import csv as csvmod

    names = [row[0] for row in csvmod.reader(stdout.splitlines()[1:])]
    assert "'" + evil in names and "'+1+2" in names and "'@SUM(A1)" in names
    assert not any(n.startswith(("=", "+", "-", "@")) for n in names)
    code, stdout, stderr = cli("shapes", str(spec), "--depth", "2", "--format", "markdown")
    assert code == 0 and "<script>" not in stdout and "&lt;script&gt;alert(1)&lt;/script&gt;" in stdout


# ---- 1. bad input: one sentence, the right exit code ---------------------------------------------


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "lenet"
    result = archviz("train", "lenet", *TINY, "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize(
    "args, env, code, words",
    [
        (["shapes", "lenet", "--input", "1x1x²8x28"], {}, 2, "'²8' is not a whole number written with 0-9"),
        (["shapes", "lenet", "--input", "1x1x28x" + "9" * 5000], {}, 2, "a size has 5,000 digits"),
        (["train", "lenet", "--epochs", "1"], {"WORLD_SIZE": "abc", "RANK": "0"}, 2, "WORLD_SIZE='abc' is not a whole number"),
        (["train", "lenet", "--seed", str(2**70)], {}, 2, "--seed must be a whole number from 0 to 2^32 - 1"),
        (["shapes", "vgg11", "-p", "ratio=" + "[" * 3000 + "]" * 3000], {}, 2, "nests lists or mappings too deeply"),
        (["shapes", "archviz.cli.app:app"], {}, 2, "is part of archviz itself, not a model"),
        (["shapes", "raises_base:net"], {}, 1, "raised Boom: boom while building the model"),
        (["shapes", "raises_base:forward_net", "--input", "1x4"], {}, 1, "Boom: boom was raised, a BaseException that is not an Exception"),
    ],
)
def test_each_case_is_one_sentence(tmp_path, args, env, code, words):
    (tmp_path / "raises_base.py").write_text(
        "from torch import nn\n\nclass Boom(BaseException):\n    pass\n\ndef net():\n    raise Boom('boom')\n\n"
        "class F(nn.Module):\n    def forward(self, X):\n        raise Boom('boom')\n\ndef forward_net():\n    return F()\n"
    )
    result = archviz(
        *args,
        "--out" if args[0] == "train" else "--depth",
        str(tmp_path / "run") if args[0] == "train" else "1",
        cwd=tmp_path,
        env={"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", **env},
    )
    line = one_sentence(result.stderr)
    assert result.returncode == code and words in line, result.stderr
    assert len(line) < 600


def _corrupt(run: Path, dest: Path, change) -> Path:
    __import__("shutil").copytree(run, dest)
    state = torch.load(dest / "last.pt", weights_only=True)
    change(state)
    torch.save(state, dest / "last.pt")
    return dest


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, words",
    [
        (lambda s: s.update(history=[{"epoch": "one"}]), "its history holds"),
        (lambda s: s.update(history="nope"), "its history is not a list of 1 epoch records"),
        (lambda s: s.update(epoch="1"), "its 'epoch' is '1', not a count of completed epochs"),
        (lambda s: s.update(ranks=[]), "it records no training process"),
        (lambda s: s.update(batch=3, ranks=[]), "it records no training process"),
        (lambda s: s.update(optimizer=torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1).state_dict()), "does not fit adam"),
    ],
)
def test_a_malformed_last_pt_is_one_sentence(cli, lenet_run, tmp_path, change, words):
    run = _corrupt(lenet_run, tmp_path / "run", change)
    code, _, stderr = cli("train", "--resume", str(run), "--epochs", "2")
    line = one_sentence(stderr)
    assert code == 1 and words in line and "0 processes" not in line, stderr


@pytest.mark.slow
def test_a_full_disk_during_train_is_one_sentence(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        result = archviz("train", "lenet", *TINY, "--out", str(disk / "run"), timeout=300)
        line = one_sentence(result.stderr)
        assert result.returncode == 1 and "No space left on device" in line and "unexpected" not in line, result.stderr
        assert [p.name for p in (disk / "run").iterdir() if p.name.endswith(".tmp")] == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ---- 5. expansion is bounded while it happens ----------------------------------------------------


def _alias_bomb(levels: int, fan: int = 10, indent: str = "  ") -> list[str]:
    lines = [f"{indent}- &l0 {{seq: {{layers: [{', '.join(['flatten'] * fan)}]}}}}"]
    return lines + [f"{indent}- &l{i} {{seq: {{layers: [{', '.join([f'*l{i - 1}'] * fan)}]}}}}" for i in range(1, levels)]


def _nested(kind: str, levels: int, fan: int) -> str:
    body = "[flatten]" if kind == "repeat" else "[]"
    for i in range(levels):
        body = f"[repeat: {{times: {fan}, index: i{i}, layers: {body}}}]"
    return body


BOMBS = {
    "aliases": "name: b\nlayers:\n" + "\n".join(_alias_bomb(9)) + "\n",
    "aliases in seq layers": "name: b\nlayers:\n  - seq:\n      layers:\n" + "\n".join(_alias_bomb(6, indent="        ")) + "\n",
    "an alias inside its anchor": "name: b\nlayers: &a\n  - seq: {layers: *a}\n",
    "nested repeats": f"name: b\nlayers: {_nested('repeat', 3, 1000)}\n",
    "repeats of nothing": f"name: b\nlayers: {_nested('empty', 4, 1000)}\n",
    "blocks of blocks": "name: b\nblocks:\n  b0:\n    layers: [flatten, flatten, flatten, flatten, flatten, flatten, flatten, flatten, flatten, flatten]\n"
    + "".join(f"  b{i}:\n    layers: [{', '.join([f'b{i - 1}'] * 10)}]\n" for i in range(1, 8))
    + "layers:\n  - b7\n",
    "blocks of empty blocks": "name: b\nblocks:\n  b0:\n    layers: []\n"
    + "".join(f"  b{i}:\n    layers: [{', '.join([f'b{i - 1}'] * 10)}]\n" for i in range(1, 8))
    + "layers:\n  - b7\n",
}


@pytest.mark.parametrize("shape", list(BOMBS))
def test_a_spec_that_expands_too_far_is_refused_in_seconds_and_little_memory(tmp_path, shape):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMBS[shape])
    assert bomb.stat().st_size < 2000
    # In a fresh process: the peak resident size grown while loading (what ulimit or a container would see).
    code = (
        "import resource, time\nfrom archviz.errors import UsageError\nfrom archviz.arch import load_arch\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\nt = time.perf_counter()\n"
        f"try:\n    load_arch({str(bomb)!r})\nexcept UsageError as exc:\n"
        "    print(time.perf_counter() - t, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024); print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    numbers, message = result.stdout.strip().split("\n", 1)
    seconds, grown_mib = map(float, numbers.split())
    assert seconds < 2.0, (shape, seconds)  # measured 0.1-1.3 s on the loaded 2-core machine
    assert grown_mib < 500, (shape, grown_mib)
    assert "expand" in message or "endless" in message, message


@pytest.mark.slow
def test_evaluate_of_a_run_storing_a_bomb_is_one_sentence(cli, lenet_run, tmp_path):
    run = _corrupt(lenet_run, tmp_path / "run", lambda s: s["config"].update(arch="bomb.yaml", spec=BOMBS["nested repeats"]))
    (run / "best.pt").unlink()
    code, _, stderr = cli("evaluate", str(run), "--limit-test", "100")
    assert code == 2
    assert one_sentence(stderr) == "archviz: error: bomb.yaml (the copy stored in the run):2: the spec expands to more than 100,000 layers; use fewer repeats."


def test_evaluate_sizes_its_batch_with_the_cost_model(monkeypatch):
    from archviz.arch import load_arch
    from archviz.estimate.memory import StepSettings, predict_memory
    from archviz.train import budget as train_budget
    from archviz.train import evaluate

    arch = load_arch("lenet")
    shape = (1, 1, 1024, 1024)  # a run trained at --resize 1024
    monkeypatch.setattr(train_budget, "step_budget", lambda device, data_bytes: 2**40)
    assert evaluate.eval_batch_size(arch, shape, False, torch.device("cpu"), 0) == evaluate.EVAL_BATCH
    budget = 2**30  # lenet at 1024x1024: 0.55 GiB at batch 1 (its first linear layer), ~48 MiB more per image
    monkeypatch.setattr(train_budget, "step_budget", lambda device, data_bytes: budget)
    batch = evaluate.eval_batch_size(arch, shape, False, torch.device("cpu"), 0)
    assert 1 <= batch < evaluate.EVAL_BATCH
    fits = predict_memory(arch, (batch, 1, 1024, 1024), StepSettings.parse(mode="eval", device="cpu")).peak_bytes
    too_big = predict_memory(arch, (batch + 1, 1, 1024, 1024), StepSettings.parse(mode="eval", device="cpu")).peak_bytes
    assert fits <= budget < too_big
