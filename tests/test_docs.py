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


def test_nightly_help_lists_every_documented_exit_code():
    """The README's exit-code table and `nightly --help` tell the same story."""
    import re

    table = README.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = re.findall(r"^\| (\d+) \|", table, re.M)
    assert {"65", "66", "143"} <= set(codes)
    help_text = " ".join(CliRunner().invoke(cli, ["nightly", "--help"]).output.split())
    for code in codes:
        assert re.search(rf"\b{code} [a-z]", help_text), f"exit code {code} not in --help"


def test_every_documented_exit_code_is_produced_by_a_test():
    """Each code of the README's table is asserted somewhere in the tests, as a number or
    by its name in jobs/errors.py: a code no test produces is a promise nobody checks."""
    import re

    import jobs.errors as errors

    table = README.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = {int(c) for c in re.findall(r"^\| (\d+) \|", table, re.M)}
    names = {value: name for name, value in vars(errors).items() if name.startswith("EXIT_")}
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    for code in sorted(codes):
        number = rf"(returncode|exit_code|\]\)?)\s*==\s*{code}\b"
        by_name = names.get(code)
        assert re.search(number, tests) or (by_name and re.search(
            rf"(returncode|exit_code)\s*==\s*{by_name}\b", tests)), \
            f"no test asserts exit code {code}"


def test_every_option_has_help_text_and_there_is_a_version():
    import click

    for command in [cli, *cli.commands.values()]:
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{command.name} {param.opts[0]} has no help text"
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("ageseg, version ")


def test_license_is_an_spdx_string():
    """setuptools warns at every install about `project.license` as a table."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    assert isinstance(project["license"], str)
