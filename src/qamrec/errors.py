"""User-facing errors: each names the file, line or field at fault and what was expected.

The CLI prints a :class:`QamrecError` as one clear message (no traceback) and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["QamrecError", "DataFormatError", "DigestMismatchError", "MissingDataError"]


class QamrecError(Exception):
    """An error the user can act on."""


class DataFormatError(QamrecError):
    """A source file does not have the format its loader expects."""

    def __init__(
        self,
        file: str | Path,
        problem: str,
        *,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.file = str(file)
        self.line = line
        self.field = field
        self.problem = problem
        self.expected = expected
        where = self.file + (f", line {line}" if line is not None else "")
        if field is not None:
            where += f", field '{field}'"
        msg = f"{where}: {problem}"
        if expected:
            msg += f" (expected {expected})"
        super().__init__(msg)


class DigestMismatchError(QamrecError):
    """A file's SHA256 differs from the digest on record."""

    def __init__(self, file: str | Path, expected: str, actual: str) -> None:
        self.file, self.expected, self.actual = str(file), expected, actual
        super().__init__(
            f"{file}: SHA256 mismatch (expected {expected}, got {actual}); "
            "the file is corrupted or truncated and was not used"
        )


class MissingDataError(QamrecError):
    """A dataset or file that a step needs has not been fetched or prepared."""
