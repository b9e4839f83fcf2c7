"""Turn raw model output into a usable consensus statement (or ``None``).

Small chat models wrap their answer in chatter ("Sure! Here is a consensus
statement:", markdown, quotes, "Note: ..." afterwards) and often stop
mid-sentence when they hit ``max_new_tokens``. ``clean_statement`` removes that
so only the statement itself is shown to participants. Pure function, no I/O.
"""

from __future__ import annotations

import re

_MIN_WORDS = 5

# "Consensus statement:", "**Revised Consensus Statement:**", "Statement 2:",
# "Answer:", ... at the very start.
_LABEL = re.compile(
    r"^(?:(?:revised|final|proposed|updated|new|group|our)\s+)*"
    r"(?:consensus(?:\s+statement)?|statement(?:\s*#?\d+)?|answer|response|output|revision)"
    r"[ \t]*(?:\([^)\n]*\))?[ \t]*(?::|[\-\u2013\u2014](?=\s)|\n|$)\s*",
    re.IGNORECASE,
)
# "Sure!", "Certainly,", "Okay." -- only with punctuation, so a statement that
# merely begins with such a word survives.
_INTERJECTION = re.compile(
    r"^(?:sure(?:\s+thing)?|certainly|of course|absolutely|okay|ok|alright|great)\s*[!.,:]+\s*",
    re.IGNORECASE,
)
# "Here is a consensus statement that ...:" / "Below is ..." up to the colon,
# or the whole line when it has no colon.
_INTRO = re.compile(
    r"^(?:here(?:'s|\u2019s|\s+is|\s+are)|below\s+is|the\s+following\s+is|i\s+propose|"
    r"i(?:'d|\u2019d|\s+would|'ll|\u2019ll|\s+will|\s+can)\s+(?:be\s+(?:happy|glad)|gladly|help|try))\b"
    r"[^\n:]*(?::|\n|$)\s*",
    re.IGNORECASE,
)
_ECHO_LINE = re.compile(r"^(?:question|opinions?)\s*:[^\n]*(?:\n|$)\s*", re.IGNORECASE)
# Where trailing commentary starts: a new line or a new sentence opening with
# one of these phrases. Everything from there on is dropped.
_TRAILER = re.compile(
    r"(?:^|\n|(?<=[.!?\"\u201d])\s+)[(\[*_\s]*"
    r"(?:note\b|notes?\s*:|explanation\s*:|rationale\s*:|word\s+count\b|i\s+hope\b|"
    r"let\s+me\s+know\b|feel\s+free\b|please\s+let\s+me\b|i\s+have\s+(?:written|tried)|"
    r"i've\b|this\s+(?:revised\s+|consensus\s+|final\s+)?statement\b)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*(?=\s|$)")
_QUOTES = {'"': '"', "\u201c": "\u201d", "\u00ab": "\u00bb", "'": "'"}


def _strip_markdown(text: str) -> str:
    text = re.sub(r"(\*\*|__|`)", "", text)
    # Headings are titles ("# Consensus"), never part of the statement.
    text = re.sub(r"(?m)^[ \t]*#{1,6}\s[^\n]*$", "", text)
    # Block quotes and list markers at line starts.
    return re.sub(r"(?m)^[ \t]*(?:>\s*|[-*\u2022]\s+|\d+[.)]\s+)", "", text)


def _strip_preamble(text: str) -> str:
    while True:
        before = text
        text = text.lstrip()
        for pattern in (_LABEL, _INTERJECTION, _INTRO, _ECHO_LINE):
            text = pattern.sub("", text, count=1)
        if text == before:
            return text


def _strip_quotes(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTES:
        close = _QUOTES[text[0]]
        if text.endswith(close):
            return text[1:-1].strip()
        if text[0] != "'" and close not in text[1:]:
            return text[1:].strip()  # opening quote of a cut-off answer
    if text.endswith('"') and text.count('"') % 2:
        return text[:-1].strip()  # closing quote without an opening one
    return text


def _complete_sentences(text: str) -> str:
    """Drop a trailing fragment left by max_new_tokens, if a full sentence exists."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] < len(text):
        return text[: ends[-1]]
    return text


def _dedupe(text: str) -> str:
    """Drop repeated sentences: small models fall into loops."""
    seen, kept = set(), []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        key = _norm(sentence)
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(sentence)
    return " ".join(kept)


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends:
        return head[: ends[-1]]
    return head.rsplit(" ", 1)[0].rstrip(" ,;:") + "\u2026"


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


_THINK = re.compile(r"^\s*<think>.*?(?:</think>|$)", re.IGNORECASE | re.DOTALL)
# "Reasoning ... Final answer: <statement>": keep what follows the last answer label.
_ANSWER_LABEL = re.compile(
    r"(?:^|\n|\s)(?:final answer|final statement|consensus statement|revised (?:consensus )?statement|"
    r"statement)\s*:\s*",
    re.IGNORECASE,
)


def _strip_reasoning(text: str) -> str:
    text = _THINK.sub("", text)
    labels = list(_ANSWER_LABEL.finditer(text))
    if labels and text[labels[-1].end():].strip():
        return text[labels[-1].end():]
    return text


def clean_statement(raw: str, max_chars: int = 1200, *, question: str | None = None) -> str | None:
    """Return the statement inside ``raw``, or ``None`` when nothing usable is left.

    ``question`` (optional) lets an answer that merely repeats it be rejected;
    without it, an answer made only of questions is rejected.
    """
    if not raw or not raw.strip():
        return None
    text = _strip_reasoning(_strip_markdown(raw.replace("\r\n", "\n")))
    text = _strip_preamble(text)
    # The statement is one paragraph; what follows a blank line is commentary
    # or the model wandering off once the statement is done.
    text = re.split(r"\n[ \t]*\n", text.strip(), maxsplit=1)[0]
    trailer = _TRAILER.search(text)
    if trailer:
        text = text[: trailer.start()]
    text = _strip_quotes(_strip_preamble(_strip_quotes(text)))
    text = " ".join(text.split())
    text = _strip_quotes(text)
    text = _cut(_dedupe(_complete_sentences(text)), max_chars).strip()

    if len(text.split()) < _MIN_WORDS:
        return None
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s]
    if all(s.rstrip("\"'\u201d").endswith("?") for s in sentences):
        return None
    if question and _norm(text) in {_norm(question), _norm("question " + question)}:
        return None
    return text
