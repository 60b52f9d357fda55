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

# What an upgrade or a downgrade of torch, torchvision, typer or rich can break. CI runs the
# whole suite at the newest versions pyproject.toml allows and, at the lowest, only these
# (`pytest -m lowest`): the compat smoke tests, the memory predictions (dispatch and
# FakeTensor layer), one run of every command, and one launch of the elastic launcher.
LOWEST = (
    "tests/test_compat.py::",
    "tests/test_memory.py::",
    "tests/test_smoke.py::",
    "tests/test_distributed.py::test_nproc_2_runs_on_the_elastic_launcher_and_matches_one_process",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(LOWEST):
            item.add_marker(pytest.mark.lowest)
