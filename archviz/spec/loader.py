"""Reading and writing spec files (YAML), with errors that name the file, line and field."""

from __future__ import annotations

import difflib
import functools
import math
from pathlib import Path
from typing import Any

import yaml

from archviz.errors import UsageError
from archviz.files import read_bounded
from archviz.spec import ops as O
from archviz.spec.expr import FUNCTIONS, IN, MAX_INT, ExprError, names_in, show
from archviz.spec.model import REPEAT, STANDARD_PARAMS, BlockDef, Layer, Spec

TOP_KEYS = ("name", "description", "default_input", "params", "blocks", "layers", "layout")
LAYOUTS = ("u",)  # diagram layout hints a spec may give
_CONSTRUCTOR = yaml.constructor.SafeConstructor()

# Bounds on what a spec file may cost to read (issue 11): the size of the file, how deep its
# lists and mappings nest (the composer and our walk recurse), and how much YAML aliases may
# add when expanded (a 3 KB "billion laughs" file expands to billions of nodes).
MAX_SPEC_BYTES = 16 * 2**20
MAX_DEPTH = 200  # nested YAML collections; each nested layer list takes 3 (item, fields, list)
MAX_ALIAS_EXPANSION = 100_000  # nodes that aliases may add to the file's own (issue 20: 1,000,000 took seconds to walk)
# Plain data only: a tag outside these (``!!python/name:os.system``, ``!foo``) is refused.
_ALLOWED_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp"))


class _Refused(yaml.YAMLError):
    def __init__(self, mark: yaml.Mark | None, message: str):
        super().__init__(message)
        self.mark, self.message = mark, message


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe composer with a nesting limit, duplicate keys refused and only plain tags."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if not self.check_event(yaml.AliasEvent) and self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _Refused(self.peek_event().start_mark, f"the spec nests lists and mappings more than {MAX_DEPTH} levels deep; flatten it")
            try:
                node = super().compose_node(parent, index)
            finally:
                self._depth -= 1
        else:
            node = super().compose_node(parent, index)
        if node.tag not in _ALLOWED_TAGS:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise _Refused(node.start_mark, f"the YAML tag {tag!r} is not allowed; a spec is plain data (numbers, text, lists, mappings)")
        return node

    def compose_mapping_node(self, anchor):  # noqa: ANN001
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = (key_node.tag, key_node.value)
                if key in seen:
                    first = seen[key].start_mark.line + 1
                    raise _Refused(key_node.start_mark, f"key {key_node.value!r} appears twice in one mapping (first on line {first}); keep one")
                seen[key] = key_node
        return node


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(nodes in the file, nodes once aliases are expanded), without expanding anything.

    A true post-order (a node's size is summed only once all its children's are known; issue 20:
    the old order summed some before their children, so a bomb counted 246 nodes from 306), and
    an alias inside its own anchor (``&a [*a]``, infinite once expanded) is refused.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        kids = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in kids)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _Refused(node.start_mark, "a YAML alias (*name) refers to the anchor it is inside of, an endless structure; write it out")
        on_path.add(key)
        stack.append((node, True))
        for child in kids:
            if id(child) in on_path:
                raise _Refused(child.start_mark, "a YAML alias (*name) refers to the anchor it is inside of, an endless structure; write it out")
            if id(child) not in sizes:
                stack.append((child, False))
    return len(sizes), sizes[id(root)]


def suggest(word: str, options, prefix: str = "; did you mean ") -> str:
    close = difflib.get_close_matches(str(word), list(options), n=3, cutoff=0.5)
    if not close:
        return ""
    return prefix + " or ".join(repr(c) for c in close) + "?"


def load_spec_file(path: str | Path) -> Spec:
    """Load and validate a spec file; every problem raises UsageError naming file and line.

    Only a regular file of at most MAX_SPEC_BYTES is read (``/dev/zero`` or a FIFO is refused
    before a byte is read); nothing in it is ever executed.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise UsageError(f"spec file {str(path)!r} does not exist; give a built-in name or the path of a YAML spec.")
    data = read_bounded(path, MAX_SPEC_BYTES, "spec file")
    if path.suffix == ".py":
        raise UsageError(_python_file_hint(path, data))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"spec file {str(path)!r} is not UTF-8 text (byte {exc.start}); give a YAML spec.") from None
    return parse_spec(text, source=str(path), default_name=path.stem)


def _python_file_hint(path: Path, data: bytes) -> str:
    """A .py file given as ARCH: say how to name the model in it (found by parsing, never by running it)."""
    import ast

    try:
        tree = ast.parse(data)
        names = [n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef) and not n.name.startswith("_")]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        names = []
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)] if names else []
    pick = (classes or names or ["NAME"])[0]
    return (
        f"{str(path)!r} is a Python file, not a YAML spec; to use a model defined in it, pass module:callable, "
        f"e.g. `{path.stem}:{pick}` (run from {str(path.parent)!r} or put it on PYTHONPATH)."
    )


def _indentation_problem(exc: yaml.YAMLError, text: str) -> str | None:
    """'LINE: message' when a YAML error is a line indented differently from its siblings (or a tab)."""
    problem, mark = getattr(exc, "problem", None) or "", getattr(exc, "problem_mark", None)
    if mark is None:
        return None
    line = mark.line + 1
    if "'\\t'" in problem or "\\t" in repr(problem):
        return f"{line}: not valid YAML: line {line} is indented with a tab; indent with spaces only."
    lines = text.splitlines()
    content = lines[mark.line].strip() if mark.line < len(lines) else ""
    if problem.startswith("expected <block end>") or problem == "mapping values are not allowed here":
        context = getattr(exc, "context_mark", None)
        block = f" that starts on line {context.line + 1}" if context is not None else ""
        return (
            f"{line}: not valid YAML: line {line} ({content[:40]!r}) is indented differently from the block{block}; "
            f"this is an indentation problem: indent it exactly like the lines it belongs with (spaces only)."
        )
    return None


def parse_spec(text: str, source: str = "<spec>", default_name: str = "custom") -> Spec:
    return _Parser(source).spec(text, default_name)


class _Parser:
    def __init__(self, source: str):
        self.source = source
        # The names an expression may use where the parser is: the spec's parameters, plus
        # a block's parameters inside its body and repeat indices inside a repeat.
        self.param_names: set[str] = set()
        self.blocks: dict[str, BlockDef] = {}
        self.block_names: set[str] = set()  # all of them, to explain a use above the definition

    def fail(self, node: yaml.Node | None, message: str) -> UsageError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return UsageError(f"{self.source}{line}: {message}")

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "expected a single value here, not a list or mapping")
        try:
            value = _CONSTRUCTOR.construct_object(node)
        except (ValueError, OverflowError):
            # Python refuses to convert integers of more than 4300 digits (CVE-2020-10735).
            raise self.fail(node, f"the number {node.value[:20]}... ({len(node.value)} characters) is too large; spec numbers must stay below 2**63") from None
        if (type(value) is int and abs(value) > MAX_INT) or (type(value) is float and not math.isfinite(value)):
            raise self.fail(node, f"the number {node.value[:24]!r} is too large; spec numbers must be finite and stay below 2**63")
        return value

    def spec(self, text: str, default_name: str) -> Spec:
        if len(text) > MAX_SPEC_BYTES:
            raise UsageError(f"{self.source}: the spec is {len(text):,} characters, more than the {MAX_SPEC_BYTES:,} archviz reads.")
        try:
            loader = _BoundedLoader(text)
            try:
                root = loader.get_single_node()
            finally:
                loader.dispose()
        except _Refused as exc:
            where = f":{exc.mark.line + 1}" if exc.mark else ""
            raise UsageError(f"{self.source}{where}: {exc.message}.") from None
        except yaml.YAMLError as exc:
            indentation = _indentation_problem(exc, text)
            if indentation:
                raise UsageError(f"{self.source}:{indentation}") from None
            # The context mark is where the broken construct starts (an unclosed '{', say).
            mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            if getattr(exc, "context", None):
                problem = f"{exc.context}: {problem}"
            raise UsageError(f"{self.source}{where}: not valid YAML ({problem}); check indentation and brackets there.") from None
        if not isinstance(root, yaml.MappingNode):
            raise self.fail(root, "a spec must be a mapping with at least a 'layers' list")
        try:
            unique, expanded = _expanded_size(root)
        except _Refused as exc:
            raise UsageError(f"{self.source}:{exc.mark.line + 1}: {exc.message}.") from None
        if expanded - unique > MAX_ALIAS_EXPANSION:
            raise self.fail(
                None,
                f"its YAML aliases (*name) expand to {expanded:,} nodes from {unique:,} written; "
                f"archviz accepts at most {MAX_ALIAS_EXPANSION:,} more than written",
            )
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
                if key in FUNCTIONS:
                    raise self.fail(key_node, f"parameter {key!r} has the name of an expression function; call it something else")
                params[key] = value
        self.param_names = set(params)
        if "blocks" in top:
            self.block_defs(top["blocks"])

        name = str(self.scalar(top["name"])) if "name" in top else default_name
        description = str(self.scalar(top["description"])) if "description" in top else ""
        default_input = (1, params["in_channels"], 224, 224)
        if "default_input" in top:
            default_input = self.input_shape(top["default_input"], params["in_channels"])
        layout = str(self.scalar(top["layout"])) if "layout" in top else ""
        if layout and layout not in LAYOUTS:
            known = "write 'layout: u' to draw an encoder-decoder as a U, or leave it out"
            raise self.fail(top["layout"], f"layout {layout!r} is not one archviz knows; {known}")
        layers = self.layers(top["layers"])
        return Spec(name, layers, description, default_input, params, self.source, dict(self.blocks), layout)

    def block_defs(self, node: yaml.Node) -> None:
        """``blocks: {name: {params: {p: default}, layers: [...]}}``; a block may use those above it."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, "'blocks' must be a mapping of block name: {params: ..., layers: [...]}")
        self.block_names = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        for key_node, value_node in node.value:
            name = self.scalar(key_node)
            if not isinstance(name, str) or not name.isidentifier():
                raise self.fail(key_node, f"block name {name!r} must be a name such as bottleneck or dense_layer")
            if name in O.OPS or name == REPEAT or name in self.blocks:
                what = "a block defined above" if name in self.blocks else "a built-in op"
                raise self.fail(key_node, f"block name {name!r} is already {what}; choose another name")
            if not isinstance(value_node, yaml.MappingNode):
                raise self.fail(value_node, f"block {name!r} must be a mapping with 'params' and 'layers'")
            parts = {}
            for k_node, v_node in value_node.value:
                k = self.scalar(k_node)
                if k not in ("params", "layers"):
                    raise self.fail(k_node, f"block {name!r} has unknown key {k!r}{suggest(k, ('params', 'layers'))} (keys: params, layers)")
                parts[k] = v_node
            if "layers" not in parts:
                raise self.fail(value_node, f"block {name!r} has no 'layers' list")
            params: dict[str, Any] = {}
            if "params" in parts:
                if not isinstance(parts["params"], yaml.MappingNode):
                    raise self.fail(parts["params"], f"the 'params' of block {name!r} must be a mapping of name: default (~ for required)")
                for k_node, v_node in parts["params"].value:
                    k, default = self.scalar(k_node), self.scalar(v_node)
                    if not isinstance(k, str) or not k.isidentifier() or type(default) not in (int, float, bool, type(None)):
                        raise self.fail(v_node, f"block parameter {k!r} needs a name and a default number, true/false, or ~ if required")
                    if k in FUNCTIONS or k == "name":
                        raise self.fail(k_node, f"block parameter {k!r} has a reserved name (name, {', '.join(FUNCTIONS)}); call it something else")
                    params[k] = default
            outer = self.param_names
            self.param_names = outer | set(params)
            try:
                layers = self.layers(parts["layers"])
            finally:
                self.param_names = outer
            self.blocks[name] = BlockDef(name, params, layers, self.source, key_node.start_mark.line + 1)

    def input_shape(self, node: yaml.Node, in_channels: Any) -> tuple[int, ...]:
        value = self.scalar(node)
        try:
            shape = tuple(int(v) for v in str(value).lower().split("x"))
        except ValueError:
            shape = ()
        if not 2 <= len(shape) <= 5 or min(shape) < 1:
            raise self.fail(node, f"default_input {value!r} must be NxC, NxCxL, NxCxHxW or NxCxDxHxW with sizes >= 1, e.g. 1x1x28x28 or 1x1x16000")
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
        elif isinstance(node, yaml.MappingNode) and node.value:
            raise self._dedented(node)
        else:
            raise self.fail(node, "a layer is written '- op: {field: value, ...}' with exactly one op name")
        if op == REPEAT:
            return self.repeat(node, fields_node, line)
        if op in self.blocks:
            return self.block_use(self.blocks[op], node, fields_node, line)
        if op in self.block_names:
            raise self.fail(node, f"block {op!r} is used inside itself or above its definition; define a block below the blocks it uses")
        if op not in O.OPS:
            known = [*O.OPS, *self.blocks, REPEAT]
            if op in _TORCH_WORDS:
                raise self.fail(node, f"unknown op {op!r}; the spec language calls it {_TORCH_WORDS[op]!r}: {O.OPS[_TORCH_WORDS[op]].doc}")
            raise self.fail(node, f"unknown op {op!r}{suggest(op, known)} (known ops: {', '.join(sorted(known))})")
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
                    raise self.fail(key_node, f"{op!r} has no field {key!r}{suggest(key, opdef.fields)} (fields: {known}){_comma_hint(key)}")
                args[key] = self.value(value_node, opdef.fields[key], op, key)
        for key, fld in opdef.fields.items():
            if fld.required and key not in args:
                raise self.fail(node, f"{op!r} is missing its required field {key!r} ({fld.kind.describe})")
        return Layer(op, args, name, self.source, line)

    def mapping(self, node: yaml.Node | None, op: str, keys) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The ``{field: value}`` of a layer as key -> (key node, value node), checked against ``keys``."""
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"the fields of {op!r} must be a mapping, e.g. {{{', '.join(keys)}: ...}}")
        out = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            if key not in keys:
                raise self.fail(key_node, f"{op!r} has no field {key!r}{suggest(key, keys)} (fields: {', '.join(keys)}){_comma_hint(key)}")
            out[key] = (key_node, value_node)
        return out

    def layer_name(self, node: yaml.Node) -> str:
        name = str(self.scalar(node))
        if not name or "." in name:
            raise self.fail(node, f"layer name {name!r} must be non-empty and contain no '.'")
        return name

    def repeat(self, node: yaml.Node, fields_node: yaml.Node | None, line: int) -> Layer:
        """``repeat: {times: N, index: i, layers: [...]}``: the layers N times, ``i`` = 0..N-1 in their expressions."""
        fields = self.mapping(fields_node, REPEAT, ("times", "index", "layers"))
        for key in ("times", "layers"):
            if key not in fields:
                raise self.fail(node, f"'repeat' is missing its required field {key!r}, e.g. repeat: {{times: 3, layers: [...]}}")
        index = "i"
        if "index" in fields:
            index = self.scalar(fields["index"][1])
            if not isinstance(index, str) or not index.isidentifier():
                raise self.fail(fields["index"][1], f"the index of 'repeat' must be a name such as i or j, not {index!r}")
        times_node = fields["times"][1]
        times = self.number(times_node, O.INT, self.fail(times_node, "field 'times' of 'repeat' must be a whole number >= 0 or an expression"))
        outer = self.param_names
        self.param_names = outer | {index}
        try:
            layers = self.layers(fields["layers"][1])
        finally:
            self.param_names = outer
        return Layer(REPEAT, {"times": times, "index": index, "layers": layers}, None, self.source, line)

    def block_use(self, block: BlockDef, node: yaml.Node, fields_node: yaml.Node | None, line: int) -> Layer:
        fields = self.mapping(fields_node, block.name, ("name", *block.params))
        name = self.layer_name(fields.pop("name")[1]) if "name" in fields else None
        args = {}
        for key, (_, value_node) in fields.items():
            value = self.scalar(value_node)
            if isinstance(value, str):
                self.number(value_node, O.INT, None)  # checks the expression's names
            elif type(value) not in (int, float, bool):
                raise self.fail(value_node, f"parameter {key!r} of block {block.name!r} must be a number, true/false or an expression")
            args[key] = value
        missing = [k for k, default in block.params.items() if default is None and k not in args]
        if missing:
            raise self.fail(node, f"block {block.name!r} needs a value for {', '.join(repr(m) for m in missing)}, e.g. {block.name}: {{{missing[0]}: ...}}")
        return Layer(block.name, args, name, self.source, line)

    def _dedented(self, node: yaml.MappingNode) -> UsageError:
        """A layer mapping with several keys: usually a field written at the op's indentation."""
        first, second = node.value[0][0], node.value[1][0]
        op, key = first.value, second.value
        if op in O.OPS:
            fields = O.OPS[op].fields
        elif op in self.blocks:
            fields = self.blocks[op].params
        else:
            fields = ("times", "index", "layers") if op == REPEAT else ()
        if key in fields or key == "name":
            return self.fail(
                second,
                f"{key!r} is at the same indentation as {op!r}, so YAML reads it as a second op of this layer; this is an indentation problem: "
                f"indent {key!r} (and the lines under it) further than {op!r}, or write `- {op}: {{{key}: ...}}`",
            )
        return self.fail(node, f"a layer is written '- op: {{field: value, ...}}' with exactly one op name, but this one has {op!r} and {key!r}")

    def value(self, node: yaml.Node, fld: O.Field, op: str, key: str) -> Any:
        kind = fld.kind
        bad = self.fail(node, f"field {key!r} of {op!r} must be {kind.describe}")
        # `in` (the input's channels) is read when the layer meets its input: a primitive's own
        # fields only, as a macro's fields go to several layers with different inputs.
        number = functools.partial(self.number, field_of=None if O.OPS[op].expand is not None else op)
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
                return tuple(number(item, kind, bad) for item in node.value)
            if kind is O.INT_PAIR:
                raise bad
            return number(node, kind, bad)
        value = self.scalar(node)
        if kind.minimum is not None or kind in (O.PROB, O.NUMBER):
            return number(node, kind, bad)
        if kind is O.BOOL:
            if isinstance(value, str):
                return number(node, kind, bad)  # an expression such as `i == 0`, checked when resolved
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

    def number(self, node: yaml.Node, kind: O.Kind, bad: UsageError | None, field_of: str | None = None) -> Any:
        """A number or an expression; ``field_of``: the primitive whose field it is, which may read ``in``."""
        value = self.scalar(node)
        if isinstance(value, str) and value in kind.words:
            return value
        if isinstance(value, str) and kind.words and value.isidentifier() and value not in self.param_names and value != IN:
            raise bad  # a misspelt word (padding: half), not an unknown parameter
        if isinstance(value, str):
            try:
                names = names_in(value)
            except ExprError as exc:
                raise self.fail(node, f"{exc}{_comma_hint(value)}") from None
            if IN in names and IN not in self.param_names and field_of is None:
                raise self.fail(
                    node,
                    f"{show(value)} uses `in`, the input's channels, which only the fields of a primitive layer (conv, linear, ...) can read; "
                    "here write the number or a parameter",
                )
            unknown = names - self.param_names - ({IN} if field_of else set())
            if unknown:
                name = sorted(unknown)[0]
                raise self.fail(node, f"{show(value)} uses unknown parameter {name!r}{suggest(name, self.param_names)}; declare it under 'params'")
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


# PyTorch's names for ops the spec language names otherwise (a user writing torch.chunk looks for `chunk`).
_TORCH_WORDS = {
    "chunk": "split",
    "channel_shuffle": "shuffle",
    "adaptive_avg_pool": "adaptive_avgpool",
    "adaptive_max_pool": "adaptive_maxpool",
    "cat": "concat",
}


def _comma_hint(text: object) -> str:
    """YAML splits `{out: max(8, w)}` at the comma; say so when a fragment of that shows up."""
    text = str(text)
    if text.count("(") != text.count(")"):
        return "; inside {...} an expression with a comma must be quoted, e.g. out: 'max(8, w)'"
    return ""


# ---- writing ------------------------------------------------------------------------


def dump_spec(spec: Spec) -> str:
    """The spec as YAML in the same language :func:`parse_spec` reads (one layer per line)."""
    head = {"name": spec.name}
    if spec.description:
        head["description"] = spec.description
    head["default_input"] = "x".join(str(d) for d in spec.default_input)
    if spec.layout:
        head["layout"] = spec.layout
    text = yaml.safe_dump(head, sort_keys=False, width=1000)
    text += "params:\n" + "".join(f"  {k}: {_flow(v)}\n" for k, v in spec.params.items())
    if spec.blocks:
        text += "blocks:\n"
        for block in spec.blocks.values():
            text += f"  {block.name}:\n"
            if block.params:
                text += f"    params: {_flow(dict(block.params))}\n"
            text += "    layers:\n" + "".join(_dump_layer(layer, 3) for layer in block.layers)
    text += "layers:\n" + "".join(_dump_layer(layer, 1) for layer in spec.layers)
    return text


def _child_kind(op: str, key: str) -> O.Kind | None:
    """LAYERS or BRANCHES if the field holds layers, else None (block uses hold numbers only)."""
    if op == REPEAT:
        return O.LAYERS if key == "layers" else None
    if op not in O.OPS:
        return None
    kind = O.OPS[op].fields[key].kind
    return kind if kind in (O.LAYERS, O.BRANCHES) else None


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("\n...\n").strip()


def _dump_layer(layer: Layer, indent: int) -> str:
    pad = "  " * indent
    scalars = {"name": layer.name} if layer.name is not None else {}
    children = {}
    for key, value in layer.args.items():
        (children if _child_kind(layer.op, key) else scalars)[key] = list(value) if isinstance(value, tuple) else value
    if not scalars and not children:
        return f"{pad}- {layer.op}\n"
    if not children:
        return f"{pad}- {layer.op}: {_flow(scalars)}\n"
    text = f"{pad}- {layer.op}:\n"
    text += "".join(f"{pad}    {k}: {_flow(v)}\n" for k, v in scalars.items())
    for key, value in children.items():
        if _child_kind(layer.op, key) is O.BRANCHES:
            text += f"{pad}    {key}:\n"
            for branch in value:
                body = "".join(_dump_layer(sub, indent + 4) for sub in branch)
                text += f"{pad}      -\n{body}" if body else f"{pad}      - []\n"
        elif value:
            text += f"{pad}    {key}:\n" + "".join(_dump_layer(sub, indent + 3) for sub in value)
        else:
            text += f"{pad}    {key}: []\n"
    return text
