"""The one generation interface every backend implements.

Backends are Django-free: they take plain requests and return plain results, so
they can be used from a notebook, a Celery worker or a benchmark alike.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.errors import GenerationError  # noqa: F401 (the backends' error; core so that lower layers raise it)


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """One completion to produce. ``seed`` makes sampling reproducible."""

    messages: tuple[ChatMessage, ...]
    seed: int
    max_new_tokens: int = 160
    temperature: float = 0.8
    top_p: float = 0.95
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationResult:
    text: str
    model_id: str
    seed: int
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    name: str
    model_id: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Produce one result per request, in order."""
        ...
