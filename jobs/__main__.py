"""`python -m jobs` is the same as the `ageseg` command."""

from jobs.cli import cli

cli(prog_name="ageseg")
