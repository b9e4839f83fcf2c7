"""Which generation servers and API-key variables a study may name (admin fields are not trusted).

A study stores the base URL of an OpenAI-compatible server and the *name* of the environment variable that
holds its API key. Both come from an admin form, so without a rule a staff user could point the worker at any
host (and have it send whatever is in, say, ``DATABASE_URL`` or ``SECRET_KEY`` as a bearer token). The rule:
the variable is named ``GENERATION_API_KEY`` or ``GENERATION_API_KEY_<SUFFIX>``, and the URL's host is one of
``settings.GENERATION_ALLOWED_HOSTS``. ``Study.clean()`` / ``LegibilityStudy.clean()`` show the problems on
the form; ``backend_options()`` checks again in the worker, before any backend is built or request sent.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings

from core.errors import GenerationError

API_KEY_ENV_PATTERN = re.compile(r"^GENERATION_API_KEY(_[A-Z0-9_]+)?$")


def endpoint_problems(*, base_url: str, api_key_env: str) -> dict[str, str]:
    """Problems with a study's server fields, keyed by the model field; empty when both are allowed."""
    problems = {}
    if api_key_env and not API_KEY_ENV_PATTERN.fullmatch(api_key_env):
        problems["generation_api_key_env"] = (
            f"{api_key_env!r} is not allowed: the variable must be named GENERATION_API_KEY or "
            "GENERATION_API_KEY_<SUFFIX> (capitals, digits, underscores).")
    if base_url:
        host = (urlsplit(base_url).hostname or "").lower()
        allowed = [h.lower() for h in settings.GENERATION_ALLOWED_HOSTS]
        if host not in allowed:
            problems["generation_base_url"] = (
                f"Host {host or '(none)'!r} is not in GENERATION_ALLOWED_HOSTS ({', '.join(allowed) or 'empty'}).")
    return problems


def endpoint_check(*, base_url: str, api_key_env: str) -> None:
    """The worker's check: raise ``GenerationError`` (recorded as the group's generation error) if not allowed."""
    problems = endpoint_problems(base_url=base_url, api_key_env=api_key_env)
    if problems:
        raise GenerationError("Generation server refused by policy: " + " ".join(problems.values()))
