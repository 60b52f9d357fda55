"""`archviz spec`: print a built-in's spec as YAML, a starting point for your own."""

from __future__ import annotations

import dataclasses

from archviz import zoo
from archviz.cli.app import command
from archviz.cli.options import ParamOpt
from archviz.errors import UsageError
from archviz.spec import dump_spec, resolve


@command("spec", ["archviz spec lenet > my_lenet.yaml", "archviz spec vgg11 -p ratio=8"])
def spec(name: str, param: ParamOpt = None) -> str:
    """Print a built-in architecture's spec (YAML, with its comments); -p changes the defaults."""
    path = zoo.spec_path(name) if not name.endswith((".yaml", ".yml")) else None
    if path is None:
        raise UsageError(f"{name!r} is a file already; `archviz spec` prints built-ins (see `archviz list`).")
    if not param:
        return path.read_text(encoding="utf-8")
    resolved = resolve(zoo.get_spec(name), param)
    return dump_spec(dataclasses.replace(resolved.spec, params=resolved.params, default_input=resolved.default_input))
