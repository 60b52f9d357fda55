"""Large specs stay cheap: the plain table drawer gives rich's exact text, and the spec walk is linear."""

import pytest

from archviz import zoo
from archviz.arch import load_arch
from archviz.render import Format, tables
from archviz.render.cost import render_cost
from archviz.render.shapes import render_shapes


def _both(monkeypatch, render):
    fast = render()
    with monkeypatch.context() as m:
        m.setattr(tables, "_plain_table", lambda *args: None)
        slow = render()
    return fast, slow


@pytest.mark.parametrize("name", zoo.list_models())
def test_plain_table_is_rich_table_for_every_builtin_and_depth(name, monkeypatch):
    trace = load_arch(name).trace()
    for depth in range(1, trace.max_depth + 1):
        fast, slow = _both(monkeypatch, lambda d=depth: render_shapes(trace, d, Format.table))
        assert fast == slow


def test_plain_table_is_rich_table_for_cost_and_falls_back_when_it_must(monkeypatch):
    from archviz.estimate.report import cost_report

    report = cost_report(load_arch("lenet"), (4, 1, 28, 28))
    fast, slow = _both(monkeypatch, lambda: render_cost(report, Format.table))
    assert fast == slow
    columns = [("name", "Name"), ("params", "Params")]
    # markup-like text, non-ASCII, too wide: rich decides
    assert tables._plain_table([{"name": "[red]x", "params": 1}], [["[red]x", "1"]], columns, "t", ()) is None
    assert tables._plain_table([{"name": "é", "params": 1}], [["é", "1"]], columns, "t", ()) is None
    assert tables._plain_table([{"name": "x" * 300, "params": 1}], [["x" * 300, "1"]], columns, "t", ()) is None
    text = tables._plain_table([{"name": "conv", "params": 12}], [["conv", "12"]], columns, "net", [("Total", "12")])
    assert text.splitlines() == ["net", "┏━━━━━━┳━━━━━━━━┓", "┃ Name ┃ Params ┃", "┡━━━━━━╇━━━━━━━━┩", "│ conv │     12 │", "└──────┴────────┘", "Total: 12"]


def _spec(layers: int) -> str:
    body = "".join("  - conv: {out: 4, kernel: 3, padding: 1}\n" if i % 2 == 0 else "  - act: {fn: relu}\n" for i in range(layers))
    return "name: big\ndefault_input: 1x4x8x8\nparams: {in_channels: 4}\nlayers:\n" + body


def test_a_5k_layer_spec_traces_and_renders(tmp_path):
    from archviz.spec import parse_spec, resolve
    from archviz.trace.from_spec import trace_spec

    resolved = resolve(parse_spec(_spec(5_000), source="big.yaml"))
    trace = trace_spec(resolved, resolved.default_input)
    assert len(trace.nodes) == 5_001 and trace.total_params == 2_500 * (4 * 4 * 9 + 4)
    text = render_shapes(trace, 1, Format.table)
    assert text.count("\n") + 1 == 1 + 3 + 5_000 + 1 + 5  # title, 3 head lines, rows, bottom, 5 footer lines (input, output, params)


def test_paused_gc_turns_the_collector_off_and_restores_it():
    import gc

    from archviz.spec.gcpause import paused_gc

    assert gc.isenabled()
    with pytest.raises(ValueError), paused_gc():
        assert not gc.isenabled()
        raise ValueError
    assert gc.isenabled()  # restored after an exception too
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # a collector that was off stays off
    finally:
        gc.enable()


def test_long_footer_lines_are_never_wrapped():
    rows = [{"name": "[x]", "v": 1}]  # markup-like text takes rich's path
    text = tables.render_rows(rows, [("name", "Name"), ("v", "V")], Format.table, footer=[("Note", "word " * 80)])
    assert [line for line in text.splitlines() if line.startswith("Note:")] == ["Note: " + ("word " * 80).strip()]
