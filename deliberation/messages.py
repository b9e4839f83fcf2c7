"""Typed websocket messages: one schema per message type, and nothing else gets through.

Client -> server messages are parsed with ``parse_client_message``; anything unknown or
malformed raises ``MessageError`` with a reply the client can show. Server -> client
messages are ``snapshot`` (see ``deliberation.selectors``), ``ack``, ``error`` and ``pong``.
"""
from __future__ import annotations

import json
from typing import Annotated, Literal

from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

MAX_MESSAGE_BYTES = 64 * 1024  # far above the longest allowed text; bigger frames are refused unread
MAX_TEXT_FIELD = 20_000  # hard cap before the study's own limit, which gives the friendly message


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    ref: str | None = Field(default=None, max_length=64, description="Echoed in the ack/error reply.")


class Ping(_Message):
    type: Literal["ping"]
    version: str | None = Field(default=None, max_length=100)


class Sync(_Message):
    type: Literal["sync"]


class SubmitOpinion(_Message):
    type: Literal["submit_opinion"]
    text: str = Field(max_length=MAX_TEXT_FIELD)


class SubmitCritique(_Message):
    type: Literal["submit_critique"]
    text: str = Field(max_length=MAX_TEXT_FIELD)


class CandidateRating(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    candidate_id: int
    agreement: int = Field(ge=1, le=7)
    quality: int = Field(ge=1, le=7)


class SubmitRatings(_Message):
    type: Literal["submit_ratings"]
    round: Literal[1, 2]
    ratings: list[CandidateRating] = Field(max_length=32)
    ranking: list[int] = Field(max_length=32)

    @field_validator("ratings")
    @classmethod
    def _one_rating_per_candidate(cls, value: list[CandidateRating]) -> list[CandidateRating]:
        if len({r.candidate_id for r in value}) != len(value):
            raise ValueError("each statement may be rated once")
        return value


class SaveDraft(_Message):
    type: Literal["draft"]
    phase: Literal["opinion", "rating", "critique", "final_rating"]
    text: str | None = Field(default=None, max_length=MAX_TEXT_FIELD)
    ratings: dict[str, dict[str, int | None]] | None = Field(default=None, max_length=32)
    ranking: list[int] | None = Field(default=None, max_length=32)


ClientMessage = Annotated[
    Ping | Sync | SubmitOpinion | SubmitCritique | SubmitRatings | SaveDraft, Field(discriminator="type")
]
_adapter = TypeAdapter(ClientMessage)
KNOWN_TYPES = ("ping", "sync", "submit_opinion", "submit_critique", "submit_ratings", "draft")


class MessageError(ValueError):
    def __init__(self, code: str, message: str, ref: str | None = None):
        super().__init__(message)
        self.code, self.message, self.ref = code, message, ref


def parse_client_message(raw: str | bytes | None) -> ClientMessage:
    if raw is None:
        raise MessageError("malformed", gettext_lazy("Messages must be JSON text frames."))
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageError("too_large", format_lazy(gettext_lazy("Message larger than {limit} bytes."),
                                                    limit=MAX_MESSAGE_BYTES))
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise MessageError("malformed", gettext_lazy("Messages must be valid JSON.")) from None
    if not isinstance(data, dict):
        raise MessageError("malformed", gettext_lazy("A message is a JSON object with a 'type'."))
    data = _without_lone_surrogates(data)
    ref = data.get("ref") if isinstance(data.get("ref"), str) else None
    if data.get("type") not in KNOWN_TYPES:
        raise MessageError("unknown_type", format_lazy(
            gettext_lazy("Unknown message type {type}; expected one of {known}."),
            type=repr(str(data.get("type"))[:40]), known=", ".join(KNOWN_TYPES)), ref)
    try:
        return _adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "message"
        raise MessageError("invalid", format_lazy(gettext_lazy("Invalid {type} message: {where}: {problem}"),
                                                  type=data["type"], where=where, problem=first.get("msg")),
                           ref) from None


def _without_lone_surrogates(value):
    """JSON may carry escaped lone surrogates (invalid unicode) or NUL characters, which PostgreSQL cannot
    store (text and jsonb refuse U+0000)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value


def error_reply(code: str, message, ref: str | None = None, *, retry_after: float | None = None) -> dict:
    reply = {"type": "error", "code": code, "message": str(message), "ref": ref}  # a lazy text: translated now
    if retry_after is not None:
        reply["retry_after"] = round(retry_after, 2)
    return reply


def ack_reply(ref: str | None, *, created: bool = True) -> dict:
    return {"type": "ack", "ref": ref, "created": created}
