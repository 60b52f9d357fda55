"""The shape of the code, checked: no import cycles (function-level imports included), and
no import running back up the layers (spec -> build/trace -> estimate -> train -> present -> cli)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "archviz"

# A module may import its own layer or a lower one, never a higher one (STYLE.md: the shape of the system).
LAYERS = [
    {"errors", "choices", "compat", "files", "params", "safe", "version"},  # leaves everyone may use
    {"spec", "zoo", "shape"},  # plain data (and --input's shapes); no torch
    {"trace", "build", "arch", "step"},  # spec -> module -> trace; the one training step
    {"estimate"},  # what a trace costs: FLOPs, memory, receptive fields
    {"train"},  # the training loop
    {"render", "gallery", "api", "explain", "walkthrough", "diff", "__init__"},  # views of a trace
    {"cli", "__main__"},  # the thin command line
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every archviz module ``name`` imports, at any level of the file (top, function, TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:  # `from archviz import zoo` imports the module archviz.zoo
                target = f"{module}.{a.name}" if f"{module}.{a.name}" in known else module
                if target in known:
                    found.add(target)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module} is in no layer: add its top-level name to LAYERS")


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_no_import_runs_back_up_the_layers():
    upward = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets if layer(b) > layer(a))
    assert upward == []


# The one place a command's result reaches stdout is the boundary (cli/app.py's _emit); the progress
# lines of `archviz train` stream as they happen, and a bare `archviz` prints its help.
STDOUT_WRITERS = {"cli/app.py:_emit", "cli/app.py:main", "cli/train.py:info", "cli/train.py:end_epoch"}


def stdout_writers() -> set[str]:
    """``file:function`` of every print without ``file=`` and every ``sys.stdout`` write in archviz/cli."""
    found = set()
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                plain_print = isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print" and not any(k.arg == "file" for k in node.keywords)
                if plain_print or (isinstance(node, ast.Attribute) and ast.unparse(node).startswith("sys.stdout.") and node.attr.startswith("write")):
                    found.add(f"cli/{path.name}:{fn.name}")
    return found


def test_commands_return_what_they_print_and_the_boundary_writes_it():
    assert stdout_writers() == STDOUT_WRITERS
