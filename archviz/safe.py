"""Text from specs and models shown safely: no terminal escapes, no bidi tricks, no markup.

A spec's layer name or a model's class name is data. Printed raw, ``\x1b[2J`` clears the
user's screen, NUL and BEL corrupt logs, and U+202E (right-to-left override) makes text
read differently from what it is (Trojan Source, CVE-2021-42574). Such characters are
shown as Python escapes (``\x1b``, ``\u202e``) instead; everything printable is kept.
Markup-like names (``[red]x[/red]``) are not a concern: render/tables.py draws its tables
itself and never reads text as rich markup.
"""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls except tab and newline, DEL, and the Unicode format characters that
# reorder or hide text: bidi embeddings/overrides/isolates, marks, zero-width characters.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]")


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def printable(text: object, newlines: bool = True) -> str:
    """``text`` with control and bidi characters escaped (``\\x1b``); tabs and newlines kept when ``newlines``."""
    s = str(text)
    if s.isascii() and s.isprintable():
        return s
    s = _UNSAFE.sub(_escape, s)
    if not newlines:
        s = s.replace("\n", "\\n").replace("\t", "\\t")
    # anything else Unicode calls a control or format character
    return "".join(_escape(re.match(".", c, re.S)) if unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\t" else c for c in s)
