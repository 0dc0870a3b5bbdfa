"""Every command has help text with an example and is documented in the README."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from jobs.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_command_has_help_example_and_readme_entry(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output, f"{name} --help lacks an example"
    assert f"ageseg {name}" in README or f"{name} " in README and f"`{name}`" in README


def test_readme_names_the_two_commands():
    assert "make demo" in README and "make test" in README
