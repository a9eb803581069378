"""The batch's own error: a problem with the batch as a whole, never with one submission."""

from __future__ import annotations

__all__ = ["BatchError"]


class BatchError(Exception):
    """A problem with the batch as a whole (a missing input, OUT in use); the CLI exits 2."""
