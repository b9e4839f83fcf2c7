"""Errors that cross layers: raised low, caught high (docs/architecture.md)."""
from __future__ import annotations


class SubmissionError(ValueError):
    """A submission that cannot be accepted; ``code`` goes to the client with the message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class GenerationError(RuntimeError):
    """The backend could not produce output (model missing, server down, a server the study may not name...)."""
