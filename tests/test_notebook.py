"""archviz where notebook users meet it: executed in a real Jupyter kernel (nbclient + ipykernel).

Each object the API returns must show itself exactly once, as HTML tables (a diagram as SVG),
with a plain-text fallback, and rich must never write into the notebook behind the user's
back (issue 17: ``archviz.cost`` as a cell's last expression once gave 27 outputs). The
numbers in the HTML are checked against ``to_dict()``, which the kernel prints as JSON.
"""

from __future__ import annotations

import json
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is a test extra (scripts/setup --test installs it)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is a test extra (scripts/setup --test installs it)")
pytest.importorskip("ipykernel", reason="ipykernel is a test extra (scripts/setup --test installs it)")

ROOT = Path(__file__).resolve().parents[1]
BOX = set("┏━┳┓┃┡╇┩│└─┴┘")  # the terminal table's box drawing: never in a notebook's HTML


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec for the interpreter running the tests, found through JUPYTER_PATH, with this checkout first on the path."""
    spec = tmp_path / "jupyter" / "kernels" / "archviz-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "archviz test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # users do not export it
    return "archviz-test"


def execute(nb, kernel: str, cwd: Path, timeout: int = 300):
    nbclient.NotebookClient(nb, kernel_name=kernel, timeout=timeout, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


class _Tables(HTMLParser):
    """Every <table>'s body rows as lists of cell texts, and the text outside tables."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._cell = []
        elif tag == "br":
            self.text.append("\n")

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).replace("\xa0", " ").rstrip())  # leading spaces: the tree's indentation
            self._cell = None

    def handle_data(self, data):
        (self._cell if self._cell is not None else self.text).append(data)


def parse(html: str) -> _Tables:
    p = _Tables()
    p.feed(html)
    return p


def number(text: str) -> int:
    return int(text.replace(",", ""))


def footer(html: str) -> dict[str, str]:
    lines = "".join(parse(html).text).splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


def only_result(cell) -> dict:
    """The cell's one output, which must be its execute_result: no stream, no display_data."""
    kinds = [o["output_type"] for o in cell.outputs]
    assert kinds == ["execute_result"], f"{cell.source!r} gave outputs {kinds}"
    return cell.outputs[0]["data"]


def printed_json(cell) -> dict:
    assert [o["output_type"] for o in cell.outputs] == ["stream"] and cell.outputs[0]["name"] == "stdout"
    return json.loads(cell.outputs[0]["text"])


@pytest.mark.slow
def test_every_api_object_displays_once_as_html_with_the_numbers_of_to_dict(kernel, tmp_path):
    code = nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        code("import json\nimport archviz"),
        code('s = archviz.summary("googlenet", input_size=(1, 1, 96, 96), depth=2)\ns'),
        code("print(json.dumps(s.to_dict()))"),
        code('c = archviz.cost("lenet", input_size=(64, 1, 28, 28), optimizer="adam")\nc'),
        code("print(json.dumps(c.to_dict()))"),
        code('archviz.diagram("lenet")'),
        code(
            "from torch import nn\narchviz.summary(nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.Flatten(), nn.Linear(6 * 28 * 28, 10)), input_size=(2, 1, 28, 28))"
        ),
        code("print(c)"),
    ]
    execute(nb, kernel, tmp_path)
    cells = nb.cells

    # summary: one result, text/html + text/plain; the rows and totals are to_dict()'s
    data = only_result(cells[1])
    assert set(data) == {"text/html", "text/plain"}
    html, summary = data["text/html"], printed_json(cells[2])
    assert "<table>" in html and "<pre>" not in html and not BOX & set(html)
    rows = parse(html).rows
    # the HTML is the table's tree: depth-1 blocks and their children; to_dict() lists the depth-2 ones
    # (indented by two spaces); to_dict() lists the depth-2 blocks, in the same order
    nested = [(name.strip(), shape, number(params)) for name, _, shape, params in rows if name.startswith("  ")]
    assert nested == [
        (b["name"].rsplit(".", 1)[1], b["output_shape"] and "[" + ", ".join(map(str, b["output_shape"])) + "]", b["params"])
        for b in summary["blocks"]
        if b["depth"] == 2
    ]
    assert len(nested) == 19
    top = [number(params) for name, _, _, params in rows if not name.startswith(" ")]
    assert len(top) == 6 and sum(top) == summary["total_params"] == 5_977_530
    assert number(footer(html)["Total params"]) == summary["total_params"]
    assert "googlenet @ 1x1x96x96" in data["text/plain"] and "5,977,530" in data["text/plain"]  # the plain-text fallback

    # cost: one result, a real table whose params and MACs are to_dict()'s, the peak in bytes
    data = only_result(cells[3])
    assert set(data) == {"text/html", "text/plain"}
    html, cost = data["text/html"], printed_json(cells[4])
    assert "<table>" in html and "<pre>" not in html and not BOX & set(html)
    rows = parse(html).rows
    assert [r[0].strip() for r in rows] == [b["name"] for b in cost["blocks"]] + ["(rest)"] == ["conv", "fc", "(rest)"]
    assert [(number(r[3]), number(r[5])) for r in rows[:-1]] == [(b["params"], b["macs"]) for b in cost["blocks"]]
    # bytes are shown rounded (64.0 KiB), each cell's title holding the exact count: per block the memory at the
    # peak (weights, grads, optimizer, kept, temporary, their sum), then (rest); together they are the peak
    exact = [number(t) for t in re.findall(r"title='([\d,]+) bytes'", html)]
    keys = ("weights_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "temporaries_bytes", "peak_share_bytes")
    assert exact == [b["memory"][k] for b in cost["blocks"] for k in keys] + [cost["memory_remainder"]["bytes"]]
    assert exact[5] + exact[11] + exact[12] == cost["memory"]["peak_bytes"]
    notes = footer(html)
    assert f"({cost['memory']['peak_bytes']:,} bytes)" in notes["Peak"]
    assert notes["Forward"].startswith(f"{cost['macs']:,} MACs = {cost['flops']:,} FLOPs")
    assert number(notes["Params"].split()[0]) == cost["total_params"] == 44_426
    assert "Peak:" in data["text/plain"]

    # diagram: one result, an SVG (the DOT source as its plain text)
    data = only_result(cells[5])
    assert set(data) == {"image/svg+xml", "text/plain"}
    assert data["image/svg+xml"].lstrip().startswith(("<?xml", "<svg", "<!--")) and "<svg" in data["image/svg+xml"]
    assert data["text/plain"].startswith("digraph")

    # a module in hand: the same HTML table
    html = only_result(cells[6])["text/html"]
    assert [(r[0], number(r[3])) for r in parse(html).rows] == [("0", 156), ("1", 0), ("2", 0), ("3", 47_050)]

    # print() is the user asking for the terminal table: one stream, nothing displayed behind it
    assert [o["output_type"] for o in cells[7].outputs] == ["stream"] and "Peak:" in cells[7].outputs[0]["text"]


@pytest.mark.slow
def test_the_example_notebook_runs_and_every_cell_shows_what_it_should(kernel, tmp_path):
    """docs/example.ipynb, executed as a user would (its training cell trains for real): it cannot rot."""
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists() and not os.environ.get("ARCHVIZ_DATA"):
        pytest.skip("the example trains on Fashion-MNIST: scripts/setup installs Debian's dataset-fashion-mnist")
    nb = nbformat.read(ROOT / "docs" / "example.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "docs/example.ipynb is committed without outputs"
    execute(nb, kernel, tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 8
    for cell in code:
        kinds = [o["output_type"] for o in cell.outputs]
        assert "error" not in kinds and "display_data" not in kinds, (cell.source, kinds)
    for i in (0, 1, 3):  # summary, summary at depth 2, cost: one HTML table each
        data = only_result(code[i])
        assert set(data) == {"text/html", "text/plain"} and "<table>" in data["text/html"] and not BOX & set(data["text/html"])
    assert parse(only_result(code[0])["text/html"]).rows[0][:3] == ["conv", "Sequential", "[1, 16, 4, 4]"]
    assert only_result(code[2])["text/plain"] == "(61706, 416520)"  # d2l's LeNet: params, MACs
    peak, flops = map(int, only_result(code[4])["text/plain"].strip("()").split(", "))
    assert f"({peak:,} bytes)" in only_result(code[3])["text/html"] and flops == 36_049_920
    assert set(only_result(code[5])) == {"image/svg+xml", "text/plain"}
    log = "".join(o.get("text", "") for o in code[6].outputs)
    assert "epoch 1," in log and "test acc" in log, log
    last = only_result(code[-1])["text/plain"]
    assert "'epoch': 1" in last and (tmp_path / "runs" / "notebook-lenet" / "last.pt").exists()


@pytest.mark.parametrize("name", __import__("archviz").__all__)
def test_every_api_function_returns_an_object_that_shows_itself_once(name, capsys):
    """Each function of ``archviz.__all__`` (new ones included, the moment they are exported), formatted
    as IPython formats a cell's result: one bundle, HTML tables or an SVG, a plain-text fallback, nothing printed."""
    formatters = pytest.importorskip("IPython.core.formatters", reason="IPython comes with ipykernel, a test extra")
    import archviz

    obj = getattr(archviz, name)("lenet")
    data, _ = formatters.DisplayFormatter().format(obj)
    assert "text/plain" in data and data["text/plain"].strip()
    assert data.keys() & {"text/html", "image/svg+xml"}, f"archviz.{name}(...) has no rich display: {sorted(data)}"
    if "text/html" in data:
        html = data["text/html"]
        assert "<table" in html and "<pre" not in html and not BOX & set(html), f"archviz.{name}(...) is not shown as HTML tables"
    assert capsys.readouterr() == ("", ""), f"archviz.{name}(...) printed while being displayed"
