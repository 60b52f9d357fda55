"""``-p KEY=VALUE`` values, read as YAML scalars: the same rules for spec parameters and callables' kwargs.

``3`` is an int, ``0.5`` a float, ``true`` a bool, ``None``/``null``/``~`` None, ``[1, 2]``
a list, anything else the text itself (``resnet50``, ``'3'`` quoted to stay text).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from archviz.errors import UsageError

MAX_VALUE_CHARS = 10_000


def parse_value(raw: str, item: str | None = None) -> Any:
    """One ``-p`` value as YAML reads it (``None`` too, as Python spells it); raise UsageError if YAML cannot."""
    import yaml

    text = raw.strip()
    shown = item if item is not None else text
    if len(text) > MAX_VALUE_CHARS:
        raise UsageError(f"-p {shown[:40]!r}...: the value has {len(text):,} characters; at most {MAX_VALUE_CHARS:,} are accepted.")
    if text == "None":
        return None
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise UsageError(f"-p {shown!r}: YAML aliases (*name) are not accepted in a value; write the value out.")
        return yaml.safe_load(text)
    except RecursionError:  # [[[[...]]]] nested deeper than Python's stack
        raise UsageError(f"-p {shown[:40]!r}...: the value nests lists or mappings too deeply; write a flat value.") from None
    except ValueError:  # an integer over Python's 4300-digit limit for int()
        key = shown.partition("=")[0]
        raise UsageError(f"-p {key}: the number has {len(text.lstrip('+-'))} digits; parameters must stay below 2**63.") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"-p {shown!r}: the value is not valid YAML ({problem}); quote text, e.g. -p 'name=\"a: b\"'.") from None


def split_param(item: str) -> tuple[str, Any]:
    """``'num_classes=10'`` -> ``('num_classes', 10)``."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip().isidentifier():
        raise UsageError(f"-p {item!r} must be written KEY=VALUE, e.g. -p num_classes=10.")
    return key.strip(), parse_value(raw, item)


def parse_params(params: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``-p`` items (or a mapping, passed through) -> keyword arguments."""
    if isinstance(params, Mapping):
        return dict(params)
    return dict(split_param(item) for item in params or ())
