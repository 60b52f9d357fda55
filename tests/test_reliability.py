"""What archviz promises, whatever it is given (issue 11); README "Reliability" states the same.

1. Bad input gets one sentence on stderr and exit code 2 (bad usage) or 1 (a run that failed),
   never a traceback.
2. Files are the user's: nothing archviz did not write is overwritten without --force.
3. Every write is atomic: a crash or a full disk leaves the old file whole, never half a file.
4. No code from a data file (spec, checkpoint) is ever executed.
5. Every input is bounded in time and memory: a hostile file ends in seconds with a sentence.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from archviz import files
from archviz.render import graphviz as gvmod
from archviz.train import budget, checkpoint, data, loop

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--limit-train", "1000", "--limit-test", "500", "--batch-size", "100", "--threads", "1", "--epochs", "1"]
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")


def one_sentence(stderr: str) -> str:
    """The error line, after checking it is the only line and not a traceback."""
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("archviz: error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def archviz(*args: str, timeout: float = 60, cwd: Path | None = None, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (for devices, FIFOs, stdout and time limits)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "archviz", *args], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout, cwd=cwd, env=env)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny run, trained from a spec file in its own folder (shared by the checkpoint tests)."""
    from typer.testing import CliRunner

    from archviz.cli import app

    home = tmp_path_factory.mktemp("specs")
    (home / "mynet.yaml").write_text(
        "name: mynet\ndefault_input: 1x1x28x28\nlayers:\n  - conv: {out: 4, kernel: 5, act: relu}\n  - maxpool: {kernel: 2}\n  - flatten\n  - linear: {out: 10}\n"
    )
    out = tmp_path_factory.mktemp("runs") / "mynet"
    cwd = os.getcwd()
    os.chdir(home)
    try:
        result = CliRunner().invoke(app, ["train", "mynet.yaml", *TINY, "--out", str(out)])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.stderr
    return out


# ---- 4. no code from data files is ever executed ------------------------------------------


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_holding_code_is_refused_not_run(cli, tmp_path, trained):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    state = checkpoint.load(trained / "last.pt")
    state["model"]["payload"] = _Payload(marker)
    torch.save(state, evil)  # what a downloaded .pt could hold
    code, _, stderr = cli("evaluate", str(evil), "--limit-test", "100")
    assert code == 1
    assert re.fullmatch(
        r"archviz: error: .*evil\.pt holds Python objects besides tensors and plain data \(posix\.system\); "
        r"archviz loads only tensors and plain data and will not run code from a checkpoint\.",
        one_sentence(stderr),
    )
    # --resume reads last.pt the same way
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    shutil.copy(evil, run / "last.pt")
    code, _, stderr = cli("train", "--resume", str(run), "--epochs", "2")
    assert code == 1
    assert one_sentence(stderr) == (
        f"archviz: error: {run / 'last.pt'} holds Python objects besides tensors and plain data (posix.system); "
        "archviz loads only tensors and plain data and will not run code from a checkpoint."
    )
    assert not marker.exists()


def test_checkpoints_hold_only_tensors_and_plain_data(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\['extra'\] is a \w*Path, not a tensor or plain data"):
        checkpoint.save({"model": {}, "extra": Path("x")}, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
    checkpoint.save({"model": {"w": torch.ones(2)}, "config": {"arch": "lenet"}, "epoch": 1, "history": [{"loss": 0.5}]}, tmp_path / "ok.pt")
    loaded = torch.load(tmp_path / "ok.pt", weights_only=True)  # exactly what weights_only accepts
    assert loaded["history"] == [{"loss": 0.5}] and loaded["model"]["w"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("tag", ["!!python/name:os.system", "!!python/object/apply:os.system ['touch pwned']", "!custom 3"])
def test_yaml_tags_are_refused_in_one_sentence(cli, tmp_path, tag):
    spec = tmp_path / "tagged.yaml"
    spec.write_text(f"name: t\nlayers:\n  - linear:\n      out: {tag}\n")
    code, _, stderr = cli("shapes", str(spec))
    assert code == 2
    assert re.fullmatch(
        r"archviz: error: .*tagged\.yaml:4: the YAML tag '!.*' is not allowed; a spec is plain data \(numbers, text, lists, mappings\)\.", one_sentence(stderr)
    )
    assert not (tmp_path / "pwned").exists()


def test_a_python_file_as_arch_is_named_not_imported(cli, tmp_path):
    marker = tmp_path / "imported"
    net = tmp_path / "mynets.py"
    net.write_text(f"open({str(marker)!r}, 'w').close()\nimport torch\n\n\nclass LeNet(torch.nn.Module):\n    pass\n")
    code, _, stderr = cli("shapes", str(net))
    assert code == 2
    assert one_sentence(stderr) == (
        f"archviz: error: {str(net)!r} is a Python file, not a YAML spec; to use a model defined in it, pass module:callable, "
        f"e.g. `mynets:LeNet` (run from {str(tmp_path)!r} or put it on PYTHONPATH)."
    )
    assert not marker.exists()


# ---- 2. files are the user's -----------------------------------------------------------------


def test_train_refuses_a_folder_of_someone_elses_files(cli, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in (("metrics.csv", "my numbers"), (".write-test", "keep"), ("notes.txt", "mine")):
        (out / name).write_text(text)
    before = snapshot(out)
    code, _, stderr = cli("train", "lenet", *TINY, "--out", str(out))
    assert code == 2
    assert one_sentence(stderr) == (
        f"archviz: error: --out {out} holds files archviz did not write (e.g. '.write-test'); choose a new or empty directory, "
        f"or pass --force to write the run there (files named like run files would be replaced)."
    )
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == [".write-test", "metrics.csv", "notes.txt"]
    code, _, stderr = cli("train", "lenet", *TINY, "--out", str(out), "--force")
    assert code == 0, stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / ".write-test").read_text() == "keep"
    assert (out / "metrics.csv").read_text().startswith("epoch,loss,")


def test_a_finished_run_is_not_overwritten(cli, trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = snapshot(run)
    code, _, stderr = cli("train", "lenet", *TINY, "--out", str(run))
    assert code == 2 and one_sentence(stderr) == (
        f"archviz: error: --out {run} already holds a run; pass --resume {run} to continue it, choose another --out, or pass --force to start over."
    )
    assert snapshot(run) == before


def test_two_runs_on_one_out_folder_the_second_refuses(cli, tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    with files.dir_lock(out, "--out"):  # a first run in progress (flock: any other open file refuses)
        code, _, stderr = cli("train", "lenet", *TINY, "--out", str(out))
    assert code == 2
    assert (
        one_sentence(stderr)
        == f"archviz: error: --out {out} is in use by another archviz process (pid {os.getpid()}); wait for it to finish or choose another directory."
    )
    assert sorted(p.name for p in out.iterdir()) == [files.LOCK_NAME]


def test_the_lock_is_released_when_a_process_dies(tmp_path):
    code = f"import os; from pathlib import Path; from archviz import files\nwith files.dir_lock(Path({str(tmp_path)!r}), 'x'): os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode == 9
    with files.dir_lock(tmp_path, "x"):  # not stale: the kernel dropped it with the process
        pass


@pytest.mark.parametrize("how", ["--resume", "--out"])
def test_a_run_stopped_before_its_first_checkpoint_can_be_resumed_or_reused(cli, trained, tmp_path, how):
    run = tmp_path / "stopped"
    run.mkdir()
    shutil.copy(trained / "config.json", run / "config.json")  # killed between config.json and last.pt
    (run / ".last.pt.abc123.tmp").write_bytes(b"half")  # and a temporary the kill left behind
    spec = tmp_path / "mynet.yaml"
    spec.write_text(json.loads((run / "config.json").read_text())["spec"])
    args = ["train", "--resume", str(run)] if how == "--resume" else ["train", str(spec), *TINY, "--out", str(run)]
    code, stdout, stderr = cli(*args)
    assert code == 0, stderr
    assert f"{run} holds no checkpoint from an earlier start; starting the run from epoch 1." in stdout
    assert [r["epoch"] for r in json.loads((run / "metrics.json").read_text())] == [1]
    assert (run / "last.pt").is_file()


@needs_dot
def test_gallery_keeps_the_users_files(cli, tmp_path):
    (tmp_path / "README.md").write_text("# my project\n")
    (tmp_path / "logo.svg").write_text("<svg/>")
    code, _, stderr = cli("gallery", str(tmp_path))
    assert code == 2
    assert one_sentence(stderr) == (
        f"archviz: error: {str(tmp_path / 'README.md')!r} already exists and is not a file archviz recognises as its own (the gallery would write a file of that name); "
        f"move it away, choose another path, or pass --force to replace it."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "logo.svg"]  # nothing written
    (tmp_path / "README.md").unlink()
    code, _, stderr = cli("gallery", str(tmp_path))
    assert code == 0, stderr
    assert (tmp_path / "logo.svg").read_text() == "<svg/>"  # a name the gallery does not use: untouched
    code, _, stderr = cli("gallery", str(tmp_path))  # its own files: rewritten without --force
    assert code == 0, stderr


def test_diagram_without_dot_keeps_a_dot_file_the_user_never_named(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(gvmod, "find_dot", lambda: None)
    (tmp_path / "x.dot").write_text("my graph")
    code, _, stderr = cli("diagram", "lenet", "-o", str(tmp_path / "x.svg"))
    assert code == 1
    message = one_sentence(stderr)
    assert f"the DOT source was not written because {str(tmp_path / 'x.dot')!r} already exists and is not a file archviz recognises as its own" in message
    assert message.endswith(f"or pass --force to replace {str(tmp_path / 'x.dot')!r}.")
    assert (tmp_path / "x.dot").read_text() == "my graph" and not (tmp_path / "x.svg").exists()
    code, _, stderr = cli("diagram", "lenet", "-o", str(tmp_path / "x.svg"), "--force")
    dot, svg = tmp_path / "x.dot", tmp_path / "x.svg"
    dot_missing = (
        f"archviz: error: graphviz's `dot` program was not found, so only the DOT source was written to '{dot}'; install graphviz "
        f"(apt-get install graphviz, brew install graphviz or conda install graphviz), then run `dot -Tsvg {dot} -o {svg}` or rerun this command."
    )
    assert code == 1 and one_sentence(stderr) == dot_missing
    assert (tmp_path / "x.dot").read_text().startswith('// archviz diagram "lenet"\ndigraph "lenet" {')
    code, _, stderr = cli("diagram", "lenet", "-o", str(tmp_path / "x.svg"))  # now it is archviz's own .dot
    assert code == 1 and one_sentence(stderr) == dot_missing


@needs_dot
def test_diagram_default_name_keeps_the_users_file(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("lenet.svg").write_text("<svg>my drawing</svg>")
    code, _, stderr = cli("diagram", "lenet")
    assert code == 2 and one_sentence(stderr) == (
        "archviz: error: 'lenet.svg' already exists and is not a file archviz recognises as its own "
        "(it is the default output name; give -o PATH to write elsewhere); move it away, choose another path, or pass --force to replace it."
    )
    assert Path("lenet.svg").read_text() == "<svg>my drawing</svg>"
    code, _, stderr = cli("diagram", "lenet", "--force")
    assert code == 0 and b"<!-- Title: lenet " in Path("lenet.svg").read_bytes()
    code, _, stderr = cli("diagram", "lenet")  # archviz's own drawing: replaced without --force
    assert code == 0, stderr


@needs_dot
@pytest.mark.parametrize("fmt", ["png", "pdf"])
def test_diagram_png_and_pdf_rerun_replaces_archvizs_own_file(cli, tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # the second run replaces the file the first one wrote
        code, stdout, stderr = cli("diagram", "lenet", "-f", fmt)
        assert (code, stdout.strip()) == (0, f"wrote lenet.{fmt}"), stderr
    written = Path(f"lenet.{fmt}").read_bytes()
    if fmt == "png":
        from PIL import Image

        image = Image.open(tmp_path / "lenet.png")
        image.load()  # every chunk's CRC is checked while decoding
        assert image.info["Software"] == "archviz" and image.info["Title"] == "lenet"
        assert written[12:16] == b"IHDR" and written[37:41] == b"tEXt"  # right after IHDR
    else:
        assert b"/Producer (archviz) " in written
        xref = int(written[written.rindex(b"startxref") + 9 :].split()[0])
        assert written[xref : xref + 4] == b"xref"  # no offset moved
        entries = written[xref:].split(b"\n")[3:6]
        for number, entry in enumerate(entries, start=1):
            offset = int(entry.split()[0])
            assert written[offset:].startswith(f"{number} 0 obj".encode()), entry
    # a PNG of another graph, and a PNG or PDF from elsewhere, are not archviz's lenet drawing
    for theirs in (b"\x89PNG\r\n\x1a\n" + written[8:200] if fmt == "pdf" else b"%PDF-1.5\n%%EOF\n", b"\x89PNG\r\n\x1a\nmine"):
        Path(f"lenet.{fmt}").write_bytes(theirs)
        code, _, stderr = cli("diagram", "lenet", "-f", fmt)
        assert code == 2 and f"'lenet.{fmt}' already exists and is not a file archviz recognises as its own (it is the default output name" in one_sentence(
            stderr
        )
        assert Path(f"lenet.{fmt}").read_bytes() == theirs


# ---- 3. every write is atomic ------------------------------------------------------------------


def _disk_full(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def test_a_full_disk_leaves_the_previous_diagram_whole(cli, tmp_path, monkeypatch):
    target = tmp_path / "x.dot"
    code, _, _ = cli("diagram", "lenet", "-o", str(target))
    good = target.read_bytes()
    _disk_full(monkeypatch)
    code, _, stderr = cli("diagram", "alexnet", "-o", str(target))
    assert code == 1
    assert one_sentence(stderr) == f"archviz: error: cannot write {str(target)!r} (No space left on device); the previous file is unchanged."
    assert target.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["x.dot"]


@needs_dot
def test_a_full_disk_leaves_no_empty_gallery_files(cli, tmp_path, monkeypatch):
    _disk_full(monkeypatch)
    code, _, stderr = cli("gallery", str(tmp_path / "g"))
    assert code == 1 and re.search(r"\(No space left on device\); none of the \d+ files was written or changed\.$", one_sentence(stderr))
    assert list((tmp_path / "g").iterdir()) == []


def test_a_full_disk_on_stdout_is_one_sentence(tmp_path):
    with open("/dev/full", "w") as full:
        result = archviz("shapes", "lenet", "--format", "json", stdout=full)
    assert result.returncode == 1
    assert one_sentence(result.stderr) == "archviz: error: cannot write the output (No space left on device); free some space or write it elsewhere."


# ---- 5. every input is bounded in time and memory ----------------------------------------------


@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a character device"), ("/dev/urandom", "a character device"), ("fifo.yaml", "a FIFO (named pipe)")])
def test_devices_and_fifos_are_refused_without_reading(tmp_path, path, kind):
    if path == "fifo.yaml":
        path = str(tmp_path / path)
        os.mkfifo(path)  # nobody writes to it: reading would wait forever
    started = time.monotonic()
    result = archviz("shapes", path, timeout=30)
    assert time.monotonic() - started < 30
    assert result.returncode == 2
    assert one_sentence(result.stderr) == f"archviz: error: spec file {path!r} is {kind}, not a regular file; archviz reads only regular files."


def test_a_huge_spec_file_is_refused_before_reading(cli, tmp_path):
    from archviz.spec.loader import MAX_SPEC_BYTES

    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(MAX_SPEC_BYTES + 1)  # sparse: costs no disk
    code, _, stderr = cli("shapes", str(big))
    assert code == 2
    assert one_sentence(stderr) == f"archviz: error: spec file {str(big)!r} is 16,777,217 bytes, more than the 16,777,216 archviz reads; is it the right file?"


def test_billion_laughs_inside_layers_ends_in_seconds(cli, tmp_path):
    lines = ["name: laughs", "layers:", "  - &l0 {seq: {layers: [flatten, flatten, flatten, flatten, flatten, flatten, flatten, flatten, flatten, flatten]}}"]
    lines += [f"  - &l{i} {{seq: {{layers: [{', '.join([f'*l{i - 1}'] * 10)}]}}}}" for i in range(1, 9)]
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 3000
    started = time.monotonic()
    code, _, stderr = cli("shapes", str(bomb))
    assert time.monotonic() - started < 5
    assert code == 2
    # Written: 5 top nodes, l0's 15, 5 for each of l1..l8 (aliases add none) = 60. Expanded: l_n is
    # s_n = 5 + 10 s_(n-1) nodes with s_0 = 15; 5 + s_0 + ... + s_8 = 1,728,395,060.
    assert one_sentence(stderr) == (
        f"archviz: error: {bomb}: its YAML aliases (*name) expand to 1,728,395,060 nodes from 60 written; archviz accepts at most 100,000 more than written"
    )


def test_a_few_aliases_are_still_fine(cli, tmp_path):
    spec = tmp_path / "alias.yaml"
    spec.write_text("name: a\nlayers:\n  - &c {conv: {out: 4, kernel: 3, padding: 1}}\n  - *c\n  - *c\n  - flatten\n")
    code, stdout, stderr = cli("shapes", str(spec), "--input", "1x1x8x8")
    assert code == 0, stderr
    assert stdout.count("Conv2d") == 3


def test_deep_nesting_is_refused_and_moderate_nesting_works(cli, tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("layers: [" + "{seq: {layers: [" * 300 + "flatten" + "]}}" * 300 + "]\n")
    code, _, stderr = cli("shapes", str(deep))
    assert code == 2
    assert one_sentence(stderr) == f"archviz: error: {deep}:1: the spec nests lists and mappings more than 200 levels deep; flatten it."
    ok = tmp_path / "ok.yaml"
    ok.write_text("layers: [" + "{seq: {layers: [" * 60 + "flatten" + "]}}" * 60 + ", {linear: {out: 10}}]\n")
    code, stdout, stderr = cli("shapes", str(ok), "--input", "1x1x4x4")
    assert code == 0, stderr
    assert "[1, 10]" in stdout


def test_duplicate_keys_are_refused(cli, tmp_path):
    spec = tmp_path / "dup.yaml"
    spec.write_text("name: d\nlayers:\n  - conv: {out: 6, kernel: 5,\n           out: 16}\n")
    code, _, stderr = cli("shapes", str(spec))
    assert code == 2
    assert one_sentence(stderr) == f"archviz: error: {spec}:4: key 'out' appears twice in one mapping (first on line 3); keep one."


def test_a_step_that_cannot_fit_is_refused_before_allocating(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "device_memory", lambda device: 6 * 2**30)  # a small machine
    allocated = []
    monkeypatch.setattr(loop, "train_step", lambda *a: allocated.append(1))
    code, _, stderr = cli(
        "train", "lenet", "--resize", "1024", "--limit-train", "1000", "--limit-test", "100", "--threads", "1", "--out", str(tmp_path / "big")
    )
    assert code == 1
    found = re.fullmatch(
        r"archviz: error: the cost model predicts (\d+\.\d) GiB for one step of lenet at 1024x1024 with batch size 128, "
        r"more than the (\d+\.\d) GiB cpu has for it; the cost model says batch size (\d+) fits: rerun with --batch-size \3\.",
        one_sentence(stderr),
    )
    assert found, stderr
    assert float(found.group(1)) > 6 and 0 < int(found.group(3)) < 128
    assert allocated == [] and not (tmp_path / "big" / "config.json").exists()
    # LeNet's first linear layer at 1024x1024 alone needs 2.75 GiB with Adam: no batch fits in 3 GiB
    monkeypatch.setattr(budget, "device_memory", lambda device: 3 * 2**30)
    code, _, stderr = cli(
        "train", "lenet", "--resize", "1024", "--limit-train", "1000", "--limit-test", "100", "--threads", "1", "--out", str(tmp_path / "big")
    )
    assert code == 1
    assert re.fullmatch(
        r"archviz: error: the cost model predicts 13\.\d GiB for one step of lenet at 1024x1024 with batch size 128, more than the 2\.0 GiB cpu has for it, "
        r"even at batch size 1; lower --resize \(now 1024\) or train on a larger device\.",
        one_sentence(stderr),
    )


def test_a_cpu_out_of_memory_gets_the_batch_size_advice(cli, tmp_path, monkeypatch):
    def oom(*args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate 9663676416 bytes.")

    monkeypatch.setattr(loop, "train_step", oom)
    code, _, stderr = cli("train", "lenet", *TINY, "--out", str(tmp_path / "oom"))
    assert code == 1
    message = one_sentence(stderr)
    assert message.startswith("archviz: error: out of memory on cpu training lenet at 28x28 with batch size 100; ")
    assert re.search(r"--batch-size \d+\.$", message)


def test_a_cpu_out_of_memory_while_measuring_threads_gets_the_same_advice(cli, tmp_path, monkeypatch):
    def oom(*args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9663676416 bytes.")

    monkeypatch.setattr(loop, "cpu_threads", oom)
    args = ["--limit-train", "1000", "--limit-test", "500", "--batch-size", "100", "--epochs", "1"]  # no --threads: they are measured
    code, _, stderr = cli("train", "lenet", *args, "--out", str(tmp_path / "oom"))
    assert code == 1
    assert one_sentence(stderr).startswith("archviz: error: out of memory on cpu training lenet at 28x28 with batch size 100; ")


def test_a_huge_budget_is_not_silently_capped(cli):
    code, _, stderr = cli("cost", "lenet", "--budget", "100000000000GiB")
    assert code == 2
    assert re.fullmatch(
        r"archviz: error: the budget of 107,374,182,400,000,000,000 bytes fits more than 1,099,511,627,776 images of 1x28x28 \(batch [\d,]+ needs [\d,]+ bytes\); "
        r"archviz searches batch sizes up to 1,099,511,627,776: give a smaller budget\.",
        one_sentence(stderr),
    )
    code, stdout, stderr = cli("cost", "lenet", "--budget", "1000GiB")  # above the old 2^24 cap
    assert code == 0, stderr
    largest = int(re.search(r"largest batch ([\d,]+)", stdout).group(1).replace(",", ""))
    assert largest > 2**24


# ---- 1. bad input: one sentence ----------------------------------------------------------------


def test_a_corrupt_gz_names_the_file(cli, tmp_path):
    for stem in data.FILES.values():
        (tmp_path / f"{stem}.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip" * 10)
    data._read.cache_clear()
    code, _, stderr = cli("train", "lenet", *TINY, "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"))
    assert code == 1
    assert re.fullmatch(
        rf"archviz: error: {re.escape(str(tmp_path))}/t[\w-]+-idx\d-ubyte\.gz is corrupt or truncated \(\w+: .+\); delete it and get the file again\.",
        one_sentence(stderr),
    )


def test_download_goes_where_data_dir_says(cli, tmp_path, monkeypatch):
    where = []

    def fake_download(root):
        where.append(root)
        raise data.RunError("offline")

    monkeypatch.setattr(data, "_download", fake_download)
    code, _, stderr = cli("train", "lenet", *TINY, "--data-dir", str(tmp_path / "fm"), "--download", "--out", str(tmp_path / "run"))
    assert code == 1 and one_sentence(stderr) == "archviz: error: offline"
    assert where == [tmp_path / "fm"]


def test_a_corrupt_config_json_is_one_sentence(cli, trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "config.json").write_text('{"arch": "lenet", "epochs": ')
    code, _, stderr = cli("train", "--resume", str(run), "--epochs", "3")
    assert code == 1
    assert re.fullmatch(
        rf"archviz: error: {re.escape(str(run))}/config\.json is corrupt \(Expecting value: line 1 column \d+ \(char \d+\)\); it is not the JSON `archviz train` writes, so the run cannot be resumed\.",
        one_sentence(stderr),
    )
    (run / "config.json").write_text('{"arch": "lenet", "epochs": "many"}')
    code, _, stderr = cli("train", "--resume", str(run), "--epochs", "3")
    assert code == 1 and one_sentence(stderr) == (
        f"archviz: error: {run / 'config.json'} is not a valid archviz run configuration "
        "(--epochs must be a positive whole number, not 'many'.); it is corrupt or was not written by archviz train."
    )


def test_a_run_carries_its_spec(cli, trained, tmp_path, monkeypatch):
    """evaluate from another directory, and after the spec file is edited, scores what was trained."""
    config = json.loads((trained / "config.json").read_text())
    assert config["arch"] == "mynet.yaml" and "conv: {out: 4, kernel: 5, act: relu}" in config["spec"]
    best = max(r["test_acc"] for r in json.loads((trained / "metrics.json").read_text()))
    monkeypatch.chdir(tmp_path)  # mynet.yaml is not here
    code, stdout, stderr = cli("evaluate", str(trained), "--format", "json", "--limit-test", "500")
    assert code == 0, stderr
    assert json.loads(stdout)["test_acc"] == pytest.approx(best, abs=1e-4) and stderr == ""
    Path("mynet.yaml").write_text(config["spec"].replace("relu", "tanh"))  # the file, edited after training
    code, stdout, stderr = cli("evaluate", str(trained), "--format", "json", "--limit-test", "500")
    assert code == 0, stderr
    assert json.loads(stdout)["test_acc"] == pytest.approx(best, abs=1e-4)
    assert stderr.strip() == "note: mynet.yaml has changed since this run was trained; using the spec stored in the run."


def test_weights_that_do_not_fit_are_one_sentence_not_key_lists(cli, trained, tmp_path):
    state = checkpoint.load(trained / "best.pt")
    state["model"]["4.weight"] = torch.zeros(10, 99)
    del state["model"]["4.bias"]
    del state["format"]
    checkpoint.save(state, tmp_path / "changed.pt")
    code, _, stderr = cli("evaluate", str(tmp_path / "changed.pt"), "--limit-test", "100")
    assert code == 1
    assert one_sentence(stderr) == (
        f"archviz: error: the weights in {tmp_path / 'changed.pt'} do not fit mynet.yaml as it is built now (1 missing, 1 of another shape tensors; "
        f"e.g. 4.weight is [10, 99] in the checkpoint, [10, 576] now); its code, spec or -p values changed since the run was trained."
    )


@pytest.mark.parametrize(
    ("text", "line", "hint"),
    [
        (
            "name: a\nlayers:\n  - residual:\n    layers:\n      - conv: {out: 1, kernel: 3, padding: 1}\n",
            4,
            "'layers' is at the same indentation as 'residual'",
        ),
        ("name: a\nparams:\n  width: 4\n layers:\n  - flatten\n", 4, "line 4 ('layers:') is indented differently from the block that starts on line 1"),
        ("name: a\nlayers:\n\t- flatten\n", 3, "line 3 is indented with a tab"),
    ],
)
def test_indentation_mistakes_say_so(cli, tmp_path, text, line, hint):
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    code, _, stderr = cli("shapes", str(spec))
    message = one_sentence(stderr)
    assert code == 2 and message.startswith(f"archviz: error: {spec}:{line}: ") and hint in message
    assert "indent" in message.split(hint)[1]


# ---- names are data: shown, never obeyed --------------------------------------------------------

HOSTILE = 'name: "clear\\e[2J\\a\\0\\u202eevil [red]x[/red] [/bold]"\nlayers:\n  - flatten: {name: "f\\e[31m[/bold]\\u202e"}\n  - linear: {out: 10, name: "[red]lin[/red]"}\n'


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv"])
def test_names_with_escapes_and_markup_are_shown_literally(cli, tmp_path, fmt):
    spec = tmp_path / "hostile.yaml"
    spec.write_text(HOSTILE)
    code, stdout, stderr = cli("shapes", str(spec), "--input", "1x1x4x4", "--format", fmt)
    assert code == 0, stderr
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]", stdout)
    assert "f\\x1b[31m[/bold]\\u202e" in stdout and "[red]lin[/red]" in stdout
    if fmt == "table":
        assert "clear\\x1b[2J\\x07\\x00\\u202eevil [red]x[/red] [/bold]" in stdout


def test_names_in_diagrams_and_errors_are_escaped(cli, tmp_path):
    spec = tmp_path / "hostile.yaml"
    spec.write_text(HOSTILE)
    code, stdout, stderr = cli("diagram", str(spec), "--input", "1x1x4x4", "-f", "dot", "-o", "-")
    assert code == 0, stderr
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e]", stdout.replace("\n", ""))
    assert "f\\\\x1b[31m[/bold]\\\\u202e" in stdout or "f\\x1b[31m[/bold]\\u202e" in stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text('layers:\n  - "\\e[2Jconv\\u202e"\n')
    code, _, stderr = cli("shapes", str(bad))
    assert (
        code == 2
        and "\x1b" not in stderr
        and "\u202e" not in stderr
        and one_sentence(stderr).startswith(f"archviz: error: {bad}:2: unknown op '\\x1b[2Jconv\\u202e'; did you mean 'conv'? (known ops: act, ")
    )


def test_ci_runs_the_readmes_test_commands():
    """The README's test commands are exactly what .ci/run runs: newest versions (all), lowest (the version-sensitive tests)."""
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = [line for block in setup.split("```sh\n")[1:] for line in block.split("```", 1)[0].strip().splitlines()]
    assert commands[0] == "scripts/setup && .venv/bin/archviz shapes googlenet --input 1x1x96x96"
    block = [line for line in commands if line.startswith("scripts/setup --test")]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("scripts/setup")]
    assert block == ci == ["scripts/setup --test && .venv/bin/python -m pytest", "scripts/setup --test --lowest && .venv-lowest/bin/python -m pytest -m lowest"]
    lowest = dict(line.split("==") for line in (ROOT / "scripts" / "lowest.txt").read_text().splitlines() if "==" in line)
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name, version in lowest.items():  # each pin is the lower bound pyproject allows (2.11.0 is written 2.11)
        bound = re.sub(r"(\.0)+$", "", version)
        assert f'"{name}>={bound}' in pyproject, name
    assert tuple(map(int, lowest["torch"].split("."))) <= (2, 11, 0)  # a GPU machine here runs torch 2.11
