"""Large specs stay cheap: the box table's exact text, a 5k-layer spec traced and drawn, the spec walk's gc pause."""

import pytest

from archviz.render import Format, tables
from archviz.render.shapes import render_shapes

_COLUMNS = [("name", "Name"), ("params", "Params")]


def _table(rows, title="", footer=()):
    return tables.render_rows(rows, _COLUMNS, Format.table, title=title, footer=footer).splitlines()


def test_a_table_is_boxed_with_numbers_on_the_right_and_a_footer():
    assert _table([{"name": "conv", "params": 12}, {"name": "fc", "params": 1234}], "net", [("Total", "1,246")]) == [
        "net",
        "┏━━━━━━┳━━━━━━━━┓",
        "┃ Name ┃ Params ┃",
        "┡━━━━━━╇━━━━━━━━┩",
        "│ conv │     12 │",
        "│ fc   │  1,234 │",
        "└──────┴────────┘",
        "Total: 1,246",
    ]


def test_wide_characters_take_two_columns_and_markup_is_drawn_as_written():
    rows = [{"name": "卷积层", "params": 1}, {"name": "é", "params": 22}, {"name": "[red]x[/red]", "params": 3}]
    assert _table(rows, "[b]t") == [
        "[b]t",
        "┏━━━━━━━━━━━━━━┳━━━━━━━━┓",
        "┃ Name         ┃ Params ┃",
        "┡━━━━━━━━━━━━━━╇━━━━━━━━┩",
        "│ 卷积层       │      1 │",  # 3 characters, 6 columns: 6 spaces of padding to the width of '[red]x[/red]'
        "│ é            │     22 │",
        "│ [red]x[/red] │      3 │",
        "└──────────────┴────────┘",
    ]


def test_an_empty_table_keeps_its_header_and_escapes_control_characters():
    assert _table([], "a\x1bb\n") == ["a\\x1bb\\n", "┏━━━━━━┳━━━━━━━━┓", "┃ Name ┃ Params ┃", "┡━━━━━━╇━━━━━━━━┩", "└──────┴────────┘"]


def test_a_table_wider_than_a_terminal_is_never_cut():
    name, title = "x" * 250, "a long title " * 20
    lines = _table([{"name": name, "params": 1}], title)
    assert lines[0] == title.rstrip()  # one line, not wrapped to the table's width
    assert lines[2] == "┃ " + "Name".ljust(250) + " ┃ Params ┃"
    assert lines[4] == f"│ {name} │      1 │" and len(lines[4]) == 2 + 250 + 3 + 6 + 2


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
    rows = [{"name": "[x]", "v": 1}]
    text = tables.render_rows(rows, [("name", "Name"), ("v", "V")], Format.table, footer=[("Note", "word " * 80)])
    assert [line for line in text.splitlines() if line.startswith("Note:")] == ["Note: " + ("word " * 80).strip()]
