"""The command-line interface: every command is registered here, one module per command."""

from archviz.cli import compare as _compare  # noqa: F401
from archviz.cli import cost as _cost  # noqa: F401
from archviz.cli import diagram as _diagram  # noqa: F401
from archviz.cli import diff as _diff  # noqa: F401
from archviz.cli import explain as _explain  # noqa: F401
from archviz.cli import gallery as _gallery  # noqa: F401
from archviz.cli import list as _list  # noqa: F401
from archviz.cli import shapes as _shapes  # noqa: F401
from archviz.cli import spec as _spec  # noqa: F401
from archviz.cli import train as _train  # noqa: F401
from archviz.cli.app import app


def main() -> None:
    app()
