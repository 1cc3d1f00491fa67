"""The exception raised for bad input data."""

from __future__ import annotations

__all__ = ["DataError", "where"]


class DataError(ValueError):
    """Bad input data; the message names the file, the frame and the field."""


def where(source: tuple[str, int] | None) -> str:
    """``"<file>, frame <k>"`` for a ``(file, frame)`` source."""
    if source is None:
        return "<memory>"
    return f"{source[0]}, frame {source[1]}"
