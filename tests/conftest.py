import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

# Lets tests name `usermodels:...` as a module:callable ARCH.
sys.path.insert(0, str(Path(__file__).parent / "data"))


@pytest.fixture
def cli():
    """Run the CLI in-process; returns (exit_code, stdout, stderr)."""
    from archviz.cli import app

    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout, result.stderr

    return run


pytest_plugins = ["browser"]
