"""docs/questions.md runs as printed: every `$ archviz ...` command's output is the page's.

Each ```console block holds one command and the output it printed; this test runs the
command in-process and compares (trailing whitespace ignored). ``ARCHVIZ_REGEN=1`` rewrites
the page's outputs instead (then read the answers under them again: they quote numbers).
The page uses ``--device cuda`` for memory: a CUDA prediction has no CPU kernel scratch, so
its bytes are the same on every machine (no GPU is needed to predict for one).
"""

import os
import re
import shlex
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "questions.md"
BLOCK = re.compile(r"```console\n\$ (archviz [^\n]+)\n(.*?)```", re.S)
REGEN = os.environ.get("ARCHVIZ_REGEN") == "1"


def _normal(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def _commands() -> list[str]:
    return [m.group(1) for m in BLOCK.finditer(PAGE.read_text(encoding="utf-8"))]


def test_the_page_asks_at_least_twelve_questions_each_with_one_command():
    text = PAGE.read_text(encoding="utf-8")
    questions = re.findall(r"^## \d+\. .+\?$", text, re.M)
    assert len(questions) >= 12
    assert len(_commands()) == len(questions)


@pytest.mark.slow
@pytest.mark.parametrize("command", _commands())
def test_the_page_shows_what_the_command_prints(cli, command):
    code, out, err = cli(*shlex.split(command)[1:])
    assert code == 0, err
    if REGEN:
        text = PAGE.read_text(encoding="utf-8")
        block = f"```console\n$ {command}\n"
        start = text.index(block) + len(block)
        end = text.index("```", start)
        PAGE.write_text(text[:start] + _normal(out) + "\n" + text[end:], encoding="utf-8")
        return
    shown = next(m.group(2) for m in BLOCK.finditer(PAGE.read_text(encoding="utf-8")) if m.group(1) == command)
    assert _normal(out) == _normal(shown), f"docs/questions.md is stale for `{command}`: rerun with ARCHVIZ_REGEN=1"
