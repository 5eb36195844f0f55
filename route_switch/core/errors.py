"""Errors that name what the user has to fix: the file, the row and the field."""
from __future__ import annotations


class RouteSwitchError(Exception):
    """Base class of every error route-switch raises on purpose."""


class InputError(RouteSwitchError, ValueError):
    """Bad user input (evalset, spec, config, artifact), located as precisely as we can."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 field: str | None = None, line: int | None = None):
        self.message, self.file, self.row, self.field, self.line = message, file, row, field, line
        where = []
        if file:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class EvalsetError(InputError):
    """An evalset file or spec is malformed."""


class ConfigError(InputError):
    """A YAML configuration (tiers, router, job) is malformed."""


class ArtifactError(InputError):
    """A saved estimator or optimised program cannot be read."""
