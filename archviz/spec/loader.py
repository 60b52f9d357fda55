"""Reading and writing spec files (YAML), with errors that name the file, line and field."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from archviz.errors import UsageError
from archviz.spec import ops as O
from archviz.spec.expr import ExprError, names_in
from archviz.spec.model import STANDARD_PARAMS, Layer, Spec

TOP_KEYS = ("name", "description", "default_input", "params", "layers")
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def suggest(word: str, options, prefix: str = "; did you mean ") -> str:
    close = difflib.get_close_matches(str(word), list(options), n=3, cutoff=0.5)
    if not close:
        return ""
    return prefix + " or ".join(repr(c) for c in close) + "?"


def load_spec_file(path: str | Path) -> Spec:
    """Load and validate a spec file; every problem raises UsageError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"spec file {str(path)!r} does not exist; give a built-in name or the path of a YAML spec.") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UsageError(f"spec file {str(path)!r} cannot be read ({exc.__class__.__name__}); give a readable YAML file.") from None
    return parse_spec(text, source=str(path), default_name=path.stem)


def parse_spec(text: str, source: str = "<spec>", default_name: str = "custom") -> Spec:
    return _Parser(source).spec(text, default_name)


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.param_names: set[str] = set()

    def fail(self, node: yaml.Node | None, message: str) -> UsageError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return UsageError(f"{self.source}{line}: {message}")

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "expected a single value here, not a list or mapping")
        return _CONSTRUCTOR.construct_object(node)

    def spec(self, text: str, default_name: str) -> Spec:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            # The context mark is where the broken construct starts (an unclosed '{', say).
            mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            if getattr(exc, "context", None):
                problem = f"{exc.context}: {problem}"
            raise UsageError(f"{self.source}{where}: not valid YAML ({problem}); check indentation and brackets there.") from None
        if not isinstance(root, yaml.MappingNode):
            raise self.fail(root, "a spec must be a mapping with at least a 'layers' list")
        top = {}
        for key_node, value_node in root.value:
            key = self.scalar(key_node)
            if key not in TOP_KEYS:
                raise self.fail(key_node, f"unknown top-level key {key!r}{suggest(key, TOP_KEYS)} (known: {', '.join(TOP_KEYS)})")
            top[key] = value_node
        if "layers" not in top:
            raise self.fail(root, "the spec has no 'layers' list")

        params = dict(STANDARD_PARAMS)
        if "params" in top:
            node = top["params"]
            if not isinstance(node, yaml.MappingNode):
                raise self.fail(node, "'params' must be a mapping of name: default value")
            for key_node, value_node in node.value:
                key, value = str(self.scalar(key_node)), self.scalar(value_node)
                if type(value) not in (int, float, bool, str) or not key.isidentifier():
                    raise self.fail(value_node, f"parameter {key!r} needs a name and a default number, true/false or text")
                params[key] = value
        self.param_names = set(params)

        name = str(self.scalar(top["name"])) if "name" in top else default_name
        description = str(self.scalar(top["description"])) if "description" in top else ""
        default_input = (1, params["in_channels"], 224, 224)
        if "default_input" in top:
            default_input = self.input_shape(top["default_input"], params["in_channels"])
        layers = self.layers(top["layers"])
        return Spec(name, layers, description, default_input, params, self.source)

    def input_shape(self, node: yaml.Node, in_channels: Any) -> tuple[int, ...]:
        value = self.scalar(node)
        try:
            shape = tuple(int(v) for v in str(value).lower().split("x"))
        except ValueError:
            shape = ()
        if len(shape) != 4 or min(shape) < 1:
            raise self.fail(node, f"default_input {value!r} must be NxCxHxW, e.g. 1x1x28x28")
        if shape[1] != in_channels:
            raise self.fail(node, f"default_input has {shape[1]} channels but in_channels is {in_channels}; make them agree")
        return shape

    def layers(self, node: yaml.Node) -> tuple[Layer, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, "expected a list of layers (each line '- op: {field: value}')")
        return tuple(self.layer(item) for item in node.value)

    def layer(self, node: yaml.Node) -> Layer:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            op, fields_node = self.scalar(node), None
        elif isinstance(node, yaml.MappingNode) and len(node.value) == 1:
            op, fields_node = self.scalar(node.value[0][0]), node.value[0][1]
        else:
            raise self.fail(node, "a layer is written '- op: {field: value, ...}' with exactly one op name")
        if op not in O.OPS:
            raise self.fail(node, f"unknown op {op!r}{suggest(op, O.OPS)} (known ops: {', '.join(sorted(O.OPS))})")
        opdef = O.OPS[op]
        args: dict[str, Any] = {}
        name = None
        if fields_node is not None and not (isinstance(fields_node, yaml.ScalarNode) and fields_node.value in ("", "~", "null")):
            if not isinstance(fields_node, yaml.MappingNode):
                raise self.fail(fields_node, f"the fields of {op!r} must be a mapping, e.g. {{{', '.join(opdef.fields) or 'name'}: ...}}")
            for key_node, value_node in fields_node.value:
                key = self.scalar(key_node)
                if key == "name":
                    name = str(self.scalar(value_node))
                    if not name or "." in name:
                        raise self.fail(value_node, f"layer name {name!r} must be non-empty and contain no '.'")
                    continue
                if key not in opdef.fields:
                    known = ", ".join(["name", *opdef.fields])
                    raise self.fail(key_node, f"{op!r} has no field {key!r}{suggest(key, opdef.fields)} (fields: {known})")
                args[key] = self.value(value_node, opdef.fields[key], op, key)
        for key, fld in opdef.fields.items():
            if fld.required and key not in args:
                raise self.fail(node, f"{op!r} is missing its required field {key!r} ({fld.kind.describe})")
        return Layer(op, args, name, self.source, line)

    def value(self, node: yaml.Node, fld: O.Field, op: str, key: str) -> Any:
        kind = fld.kind
        bad = self.fail(node, f"field {key!r} of {op!r} must be {kind.describe}")
        if kind is O.LAYERS:
            return self.layers(node)
        if kind is O.BRANCHES:
            if not isinstance(node, yaml.SequenceNode) or not node.value:
                raise bad
            return tuple(self.layers(branch) for branch in node.value)
        if kind.axes or kind is O.INT_PAIR:
            if isinstance(node, yaml.SequenceNode):
                if not (len(node.value) == 2 if kind is O.INT_PAIR else 1 <= len(node.value) <= 3):
                    raise bad
                return tuple(self.number(item, kind, bad) for item in node.value)
            if kind is O.INT_PAIR:
                raise bad
            return self.number(node, kind, bad)
        value = self.scalar(node)
        if kind.minimum is not None or kind in (O.PROB, O.NUMBER):
            return self.number(node, kind, bad)
        if kind is O.BOOL:
            if type(value) is not bool:
                raise bad
            return value
        if kind.choices:
            if value is None or value == "none":
                return None
            if value not in kind.choices:
                raise self.fail(node, f"field {key!r} of {op!r} is {value!r}, not {kind.describe}{suggest(value, kind.choices)}")
            return value
        if not isinstance(value, str):
            raise bad
        return value

    def number(self, node: yaml.Node, kind: O.Kind, bad: UsageError) -> Any:
        value = self.scalar(node)
        if isinstance(value, str):
            try:
                unknown = names_in(value) - self.param_names
            except ExprError as exc:
                raise self.fail(node, f"{exc}") from None
            if unknown:
                name = sorted(unknown)[0]
                raise self.fail(node, f"{value!r} uses unknown parameter {name!r}{suggest(name, self.param_names)}; declare it under 'params'")
            return value
        if kind is O.PROB:
            if type(value) not in (int, float) or not 0 <= value < 1:
                raise bad
            return value
        if kind is O.NUMBER:
            if type(value) not in (int, float) or not 0 < value < float("inf"):
                raise bad
            return value
        if type(value) is not int or value < kind.minimum:
            raise bad
        return value


# ---- writing ------------------------------------------------------------------------


def dump_spec(spec: Spec) -> str:
    """The spec as YAML in the same language :func:`parse_spec` reads (one layer per line)."""
    head = {"name": spec.name}
    if spec.description:
        head["description"] = spec.description
    head["default_input"] = "x".join(str(d) for d in spec.default_input)
    text = yaml.safe_dump(head, sort_keys=False, width=1000)
    text += "params:\n" + "".join(f"  {k}: {_flow(v)}\n" for k, v in spec.params.items())
    text += "layers:\n" + "".join(_dump_layer(layer, 1) for layer in spec.layers)
    return text


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("\n...\n").strip()


def _dump_layer(layer: Layer, indent: int) -> str:
    pad = "  " * indent
    scalars = {"name": layer.name} if layer.name is not None else {}
    children = {}
    for key, value in layer.args.items():
        is_layers = O.OPS[layer.op].fields[key].kind in (O.LAYERS, O.BRANCHES)
        (children if is_layers else scalars)[key] = list(value) if isinstance(value, tuple) else value
    if not scalars and not children:
        return f"{pad}- {layer.op}\n"
    if not children:
        return f"{pad}- {layer.op}: {_flow(scalars)}\n"
    text = f"{pad}- {layer.op}:\n"
    text += "".join(f"{pad}    {k}: {_flow(v)}\n" for k, v in scalars.items())
    for key, value in children.items():
        if O.OPS[layer.op].fields[key].kind is O.BRANCHES:
            text += f"{pad}    {key}:\n"
            for branch in value:
                body = "".join(_dump_layer(sub, indent + 4) for sub in branch)
                text += f"{pad}      -\n{body}" if body else f"{pad}      - []\n"
        elif value:
            text += f"{pad}    {key}:\n" + "".join(_dump_layer(sub, indent + 3) for sub in value)
        else:
            text += f"{pad}    {key}: []\n"
    return text
