"""The jobs' own run-time failure, below every command module so that any of them (the
runner, the Ray engine) can raise it without importing the others."""

from __future__ import annotations

import click


class JobFailed(click.ClickException):
    """A run-time failure with its own exit code, printed as one line."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
