"""Backend registry: ``get_backend("embedded")``, ``get_backend("openai", base_url=...)`` or ``get_backend("extractive")``.

Backends are imported lazily so that asking for the extractive baseline never
imports torch or transformers.
"""

from __future__ import annotations

from importlib import import_module

from .base import Backend, ChatMessage, GenerationError, GenerationRequest, GenerationResult

# name -> "module:Class", relative to this package
_REGISTRY = {
    "embedded": "embedded:EmbeddedBackend",
    "extractive": "extractive:ExtractiveBackend",
    "openai": "openai_http:OpenAICompatibleBackend",
    "recorded": "recorded:RecordedBackend",
}


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str, **options) -> Backend:
    """Instantiate the backend registered as ``name`` with ``options``."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown generation backend {name!r}; known: {', '.join(backend_names())}") from None
    module_name, class_name = target.split(":")
    module = import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)(**options)


__all__ = [
    "Backend",
    "ChatMessage",
    "GenerationError",
    "GenerationRequest",
    "GenerationResult",
    "backend_names",
    "get_backend",
]
