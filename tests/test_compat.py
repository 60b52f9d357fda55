"""Smoke tests for every private API archviz uses (archviz/compat.py).

Each test exercises the entry the way archviz does, so a torch/torchvision/typer release
that moves or changes one fails here, by name, before it fails somewhere deep in a command.
"""

import struct
import sys

import pytest
import torch
import typer
from torch import nn

from archviz import compat
from archviz.errors import RunError


# -- typer / click ----------------------------------------------------------------------
def test_click_exceptions_are_the_ones_typer_raises():
    import typer.core

    assert issubclass(compat.UsageError, compat.ClickException)
    assert issubclass(compat.NoArgsIsHelpError, Exception)
    # the vendored click (typer >= 0.2x) or the click package: the group's base class raises these
    click = getattr(typer.core, "_click", None) or __import__("click")
    assert compat.click_exceptions is click.exceptions
    assert compat.Abort is typer.Abort and compat.Exit is typer.Exit


def test_usage_error_and_no_args_reach_the_boundary(cli):
    code, out, err = cli("shapes", "lenet", "--format", "nope")
    assert code == 2 and err.startswith("archviz: error: ") and len(err.strip().splitlines()) == 1
    code, out, err = cli()
    assert code == 2 and "Usage:" in out


def test_abort_from_a_command_is_one_line(cli, monkeypatch):
    """typer 0.29 moved Abort out of typer._click.exceptions; the boundary must still catch it."""
    import archviz.cli.shapes as shapes_cli

    def abort(*a, **k):
        raise typer.Abort()

    monkeypatch.setattr(shapes_cli, "shapes_report", abort, raising=False)
    monkeypatch.setattr(shapes_cli, "load_arch", abort, raising=False)
    code, out, err = cli("shapes", "lenet")
    assert code == 1
    assert err.strip() == "archviz: error: aborted."


def test_debug_mode_shows_the_real_traceback(monkeypatch):
    """ARCHVIZ_DEBUG=1 re-raises the command's own error (it used to die on typer._click.exceptions.Abort)."""
    import subprocess

    code = (
        "import archviz.cli.shapes as s\n"
        "def boom(*a, **k): raise ValueError('the real error')\n"
        "s.load_arch = boom\n"
        "from archviz.cli import app\n"
        "app(['shapes', 'lenet'])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**__import__("os").environ, "ARCHVIZ_DEBUG": "1"})
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == "ValueError: the real error"
    assert "AttributeError" not in run.stderr


# -- torch internals ----------------------------------------------------------------------
def test_torch_dispatch_mode_sees_operators():
    seen = []

    class Spy(compat.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    with Spy():
        torch.ones(2, 3, device="meta") @ torch.ones(3, 4, device="meta")
    assert "aten.mm" in seen


def test_tree_leaves_flattens_nested_outputs():
    a, b, c = torch.zeros(1), torch.zeros(2), torch.zeros(3)
    assert [t.numel() for t in compat.tree_leaves({"x": (a, [b]), "y": c})] == [1, 2, 3]


def test_fake_tensors_have_shapes_but_no_data():
    with compat.fake_mode():
        t = torch.empty(1000, 1000)
        real = torch.zeros(2)  # allow_non_fake_inputs: real tensors may mix in
        s = t + real.sum()
    assert compat.is_fake(t) and compat.is_fake(s)
    assert tuple(s.shape) == (1000, 1000)
    assert not compat.is_fake(torch.zeros(1))


def test_weak_id_key_dictionary_forgets_dead_storages():
    d = compat.WeakIdKeyDictionary()
    t = torch.zeros(3)
    d[t.untyped_storage()] = 1
    assert len(d) == 1
    del t
    assert len(d) == 0


def test_fused_adam_runs_on_meta_only_inside_the_patch():
    w = nn.Parameter(torch.ones(4, device="meta"))
    w.grad = torch.ones(4, device="meta")
    import torch.optim.adam as adam_module

    original = adam_module._device_dtype_check_for_fused
    with compat.fused_adam_on_meta():
        torch.optim.Adam([w], lr=0.1, fused=True).step()
        torch.optim.AdamW([w], lr=0.1, fused=True).step()
    assert adam_module._device_dtype_check_for_fused is original
    with pytest.raises(RuntimeError):  # torch itself refuses fused Adam on meta
        torch.optim.Adam([w], lr=0.1, fused=True).step()


def test_sdpa_swap_is_undone_and_kernels_exist():
    from torch.nn import functional as F

    original = F.scaled_dot_product_attention
    calls = []

    def make(orig):
        def spy(*a, **k):
            calls.append(1)
            return orig(*a, **k)

        return spy

    q = torch.randn(1, 2, 4, 8)
    with compat.replaced_sdpa(make):
        out = nn.functional.scaled_dot_product_attention(q, q, q)
    assert calls == [1] and tuple(out.shape) == (1, 2, 4, 8)
    assert F.scaled_dot_product_attention is original
    flash_cpu, flash_cuda, efficient = compat.sdpa_kernels()
    fused = flash_cpu(q, q, q, 0.0, False, attn_mask=None, scale=None)[0]
    torch.testing.assert_close(fused, out)
    # the CUDA kernels exist as ops and run on meta tensors (shape inference only)
    m = q.to("meta").half()
    assert tuple(flash_cuda(m, m, m, 0.0, False, False, scale=None)[0].shape) == (1, 2, 4, 8)
    assert tuple(efficient(m, m, m, None, True, 0.0, False, scale=None)[0].shape) == (1, 2, 4, 8)


def test_profiler_event_tree_has_allocation_events():
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        x = torch.empty(1 << 20)  # 4 MiB
        del x
    sizes, stack = [], list(compat.profiler_event_tree(prof))
    while stack:
        node = stack.pop()
        if str(node.tag).endswith("Allocation"):
            sizes.append(node.extra_fields.alloc_size)
        stack.extend(node.children)
    assert 4 << 20 in sizes and -(4 << 20) in sizes


def test_profiler_event_tree_missing_is_one_sentence():
    class Old:
        profiler = None

    with pytest.raises(RunError, match=r"has no profiler event tree.*archviz is tested with torch"):
        compat.profiler_event_tree(Old())


def test_torchvision_idx_readers(tmp_path):
    images = struct.pack(">IIII", 0x0803, 2, 28, 28) + bytes(range(256)) * 6 + bytes(2 * 784 - 1536)
    labels = struct.pack(">II", 0x0801, 2) + bytes([3, 9])
    (tmp_path / "x").write_bytes(images)
    (tmp_path / "y").write_bytes(labels)
    X, y = compat.read_image_file(str(tmp_path / "x")), compat.read_label_file(str(tmp_path / "y"))
    assert tuple(X.shape) == (2, 28, 28) and X.dtype == torch.uint8 and int(X[0, 0, 5]) == 5
    assert y.tolist() == [3, 9]


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        compat.not_there  # noqa: B018


def test_compat_does_not_import_torch_for_the_cli():
    import subprocess

    code = "import sys, archviz.compat, archviz.cli.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


PRIVATE_ROOTS = ("torch", "torchvision", "typer")


def _is_private(dotted: str) -> bool:
    """``torch.utils._pytree``, ``torch.ops.aten._foo``, ``typer._click``: a name after the root that starts with ``_``."""
    root, *rest = dotted.split(".")
    return root in PRIVATE_ROOTS and any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in rest)


def private_uses(source: str) -> list[tuple[int, str]]:
    """Every private torch/torchvision/typer name a module reaches: imports, attribute chains
    through import aliases, ``getattr(torch, "_x")`` and module paths written as strings."""
    import ast
    import re

    tree = ast.parse(source)
    alias: dict[str, str] = {}
    hits: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                hits += [(node.lineno, a.name)] if _is_private(a.name) else []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                alias[a.asname or a.name] = f"{node.module}.{a.name}"
                hits += [(node.lineno, f"{node.module}.{a.name}")] if _is_private(f"{node.module}.{a.name}") else []
    dotted_string = re.compile(r"^(torch|torchvision|typer)(\.\w+)+$")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, cur = [], node
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id in alias:
                full = ".".join([alias[cur.id], *reversed(chain)])
                hits += [(node.lineno, full)] if _is_private(full) else []
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2:
            target, name = node.args[0], node.args[1]
            if isinstance(target, ast.Name) and target.id in alias and isinstance(name, ast.Constant) and isinstance(name.value, str):
                full = f"{alias[target.id]}.{name.value}"
                hits += [(node.lineno, full)] if _is_private(full) else []
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and dotted_string.match(node.value) and _is_private(node.value):
            hits.append((node.lineno, node.value))
    return sorted(set(hits))


def test_the_private_api_scan_finds_every_form():
    source = (
        "import torch\nimport torch.nn.functional as F\nfrom torch.utils import _pytree\nimport typer.core as tc\n"
        "a = torch._C\nb = F._canonical_mask\nc = tc._click\nd = getattr(torch, '_dynamo')\ne = 'torch._subclasses.fake_tensor'\n"
        "f = torch.nn.functional.relu\ng = torch.__version__\n"
    )
    assert [name for _, name in private_uses(source)] == [
        "torch.utils._pytree",
        "torch._C",
        "torch.nn.functional._canonical_mask",
        "typer.core._click",
        "torch._dynamo",
        "torch._subclasses.fake_tensor",
    ]


def test_private_apis_are_touched_only_here():
    """An allowlist of one: compat.py. An upgrade that moves a private name must break compat.py alone."""
    from pathlib import Path

    package = Path(compat.__file__).parent
    offenders = [
        f"{path.relative_to(package.parent)}:{line} {name}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "compat.py"
        for line, name in private_uses(path.read_text())
    ]
    assert offenders == []
    assert private_uses((package / "compat.py").read_text())  # the scan sees what compat.py does reach


def test_every_torch_load_refuses_pickled_code():
    import re
    from pathlib import Path

    package = Path(compat.__file__).parent
    calls = [(p.name, line.strip()) for p in package.rglob("*.py") for line in p.read_text().splitlines() if re.search(r"torch\.load\(", line)]
    assert calls and all("weights_only=True" in line for _, line in calls), calls


def test_cpu_feature_queries_answer_for_the_memory_model():
    flags = compat.cpu_isa_flags()
    assert set(flags) == {"avx2", "avx512", "avx512_bf16", "amx_tile", "amx_fp16"} and all(isinstance(v, bool) for v in flags.values())
    assert not flags["avx512_bf16"] or flags["avx512"]  # bf16 instructions come with AVX-512
    assert not flags["amx_fp16"] or flags["amx_tile"]  # AMX-FP16 runs on AMX tiles
    assert isinstance(compat.mkldnn_bf16_supported(), bool)


def test_tensor_version_counts_in_place_changes():
    import torch

    x = torch.zeros(3, device="meta")
    assert compat.tensor_version(x) == 0
    x.add_(1)
    x[0:1].mul_(2)  # a view changes the same data
    assert compat.tensor_version(x) == 2


def test_forward_flop_counter_counts_totals_and_sees_every_aten_op():
    import torch

    counter = compat.forward_flop_counter()
    X = torch.ones(2, 3, requires_grad=True)
    with torch.no_grad(), counter:
        torch.cdist(X[None], X[None])
        X @ torch.ones(3, 4)
    assert counter.get_total_flops() == 2 * 2 * 3 * 4
    names = [str(op) for op in counter.archviz_seen]
    assert any("cdist" in n for n in names) and any(n.endswith("mm") for n in names)
    mm = next(op for op in counter.archviz_seen if str(op).endswith("mm"))
    assert compat.has_flop_formula(counter, mm)


def test_replaced_vf_lstm_and_the_onednn_lstm_layer():
    from torch import _VF

    original = _VF.lstm
    calls = []

    def make(orig):
        def lstm(*args):
            calls.append(len(args))
            return orig(*args)

        return lstm

    net = nn.LSTM(8, 16, batch_first=True)
    with compat.replaced_vf_lstm(make):
        out, _ = net(torch.randn(2, 5, 8))
    assert calls == [9] and tuple(out.shape) == (2, 5, 16)
    assert _VF.lstm == original  # the swap is undone
    layer = compat.mkldnn_rnn_layer()
    x, w_ih, w_hh, b, h = torch.randn(5, 2, 8), torch.randn(64, 8), torch.randn(64, 16), torch.zeros(64), torch.zeros(2, 16)
    out, hy, cy, kept = layer(x, w_ih, w_hh, b, b, h, h, False, [], 2, 16, 1, True, False, False, True)
    assert tuple(out.shape) == (5, 2, 16) and tuple(hy.shape) == tuple(cy.shape) == (2, 16) and kept.numel() > 0
    meta = [t.to("meta") for t in (x, w_ih, w_hh, b, b, h, h)]  # the meta kernel exists (no workspace: simulate.onednn_lstm adds it)
    assert tuple(layer(*meta, False, [], 2, 16, 1, True, False, False, True)[0].shape) == (5, 2, 16)
