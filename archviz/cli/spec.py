"""`archviz spec`: print a built-in's spec as YAML, a starting point for your own."""

from __future__ import annotations

from archviz import zoo
from archviz.cli.app import command
from archviz.cli.options import ParamOpt
from archviz.errors import UsageError
from archviz.spec import dump_spec, resolve
from archviz.spec.model import Spec


@command("spec", ["archviz spec lenet > my_lenet.yaml", "archviz spec vgg11 -p ratio=8"])
def spec(name: str, param: ParamOpt = None) -> None:
    """Print a built-in architecture's spec (YAML, with its comments); -p changes the defaults."""
    path = zoo.spec_path(name) if not name.endswith((".yaml", ".yml")) else None
    if path is None:
        raise UsageError(f"{name!r} is a file already; `archviz spec` prints built-ins (see `archviz list`).")
    if not param:
        print(path.read_text(encoding="utf-8"), end="")
        return
    original = zoo.get_spec(name)
    values = resolve(original, param).params
    print(
        dump_spec(
            Spec(
                original.name, original.layers, original.description, original.default_input[:1] + (values["in_channels"],) + original.default_input[2:], values
            )
        ),
        end="",
    )
