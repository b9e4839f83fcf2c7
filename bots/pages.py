"""The participant pages a bot fills in like a browser: the screening questions and the questionnaire.

``parse_form`` reads the page's POST form the way a browser sees it (hidden inputs such as the CSRF token, radio
and checkbox groups with their values, number inputs with their ``min``/``max``, text areas with their
``maxlength``), knowing nothing of how the server built it. ``screening_choices`` picks the screening answers for
a mode (``pass``, ``fail``, ``random``); ``questionnaire_choices`` gives every item a valid answer of its kind,
drawn from the bot's rng. No Django: the pages come over HTTP (``bots.client``).
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

SCREENING_MODES = ("pass", "fail", "random")

# Free-text answers: short, plain sentences a participant might leave in a questionnaire.
FREE_TEXTS = (
    "It was interesting to read the statements.",
    "The discussion went well and the time was enough.",
    "Nothing to add, thank you.",
    "Some statements were too long to read on a phone.",
    "I liked seeing a statement that tried to cover every view.",
)


class ScreeningError(RuntimeError):
    """The bot cannot answer the screening questions in its mode (no answer key, an unexpected page)."""


@dataclass
class FormField:
    name: str
    kind: str  # "radio", "checkbox", "number", "text" (any other input that takes text, and text areas)
    options: list[str] = field(default_factory=list)  # radio and checkbox values, in page order
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    label: str = ""  # the fieldset's legend (the question), for messages


@dataclass
class PageForm:
    action: str | None  # None: the page's own URL
    hidden: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FormField] = field(default_factory=dict)  # in page order
    errors: list[str] = field(default_factory=list)  # the page's error messages (class "error")


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


class _FormParser(HTMLParser):
    """The first POST form of a page; with the legends (labels) and error paragraphs around its fields."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.form: PageForm | None = None
        self.in_form = False
        self.done = False
        self.legend: list[str] | None = None
        self.label = ""
        self.error: list[str] | None = None
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form" and not self.done and a.get("method", "get").lower() == "post":
            self.form, self.in_form = PageForm(action=a.get("action") or None), True
        elif tag == "legend":
            self.legend = []
        elif tag == "p" and "error" in a.get("class", "").split():
            self.error = []
        if not self.in_form or self.form is None or not a.get("name"):
            return
        name = a["name"]
        if tag == "input":
            kind = a.get("type", "text").lower()
            if kind == "hidden":
                self.form.hidden[name] = a.get("value", "")
            elif kind in ("radio", "checkbox"):
                entry = self.form.fields.setdefault(name, FormField(name=name, kind=kind, label=self.label))
                entry.options.append(a.get("value", "on"))
            elif kind == "number":
                self.form.fields[name] = FormField(name=name, kind="number", minimum=_number(a.get("min")),
                                                   maximum=_number(a.get("max")), label=self.label)
            elif kind not in ("submit", "button", "reset", "file", "image"):
                self.form.fields[name] = FormField(name=name, kind="text", label=self.label,
                                                   max_length=int(a["maxlength"]) if a.get("maxlength", "").isdigit()
                                                   else None)
        elif tag == "textarea":
            self.form.fields[name] = FormField(name=name, kind="text", label=self.label,
                                               max_length=int(a["maxlength"]) if a.get("maxlength", "").isdigit()
                                               else None)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.in_form:
            self.in_form, self.done = False, True
        elif tag == "legend" and self.legend is not None:
            self.label, self.legend = " ".join("".join(self.legend).split()), None
        elif tag == "p" and self.error is not None:
            self.errors.append(" ".join("".join(self.error).split()))
            self.error = None

    def handle_data(self, data: str) -> None:
        if self.legend is not None:
            self.legend.append(data)
        if self.error is not None:
            self.error.append(data)


def parse_form(html: str) -> PageForm:
    """The page's first POST form; ``ValueError`` when it has none."""
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    if parser.form is None:
        raise ValueError("the page has no form to fill in")
    parser.form.errors = [e for e in parser.errors if e]
    return parser.form


def page_errors(html: str) -> str:
    """The error messages a page shows (for a bot's failure report)."""
    try:
        return "; ".join(parse_form(html).errors) or "no message on the page"
    except ValueError:
        return "no form on the page"


def question_id(name: str) -> int | None:
    """The screening question's id in its field name (``q<ID>``, ``participants.forms.screening_field_name``)."""
    match = re.fullmatch(r"q(\d+)", name)
    return int(match.group(1)) if match else None


def screening_choices(form: PageForm, mode: str, answers: dict[int, str], rng: random.Random) -> dict[str, str]:
    """The option to choose per question on the screening page. ``pass``: the correct one (from ``answers``,
    question id -> correct option, which the page never shows); ``fail``: a wrong one; ``random``: any."""
    if mode not in SCREENING_MODES:
        raise ScreeningError(f"unknown screening mode {mode!r}: use one of {', '.join(SCREENING_MODES)}")
    chosen = {}
    for name, entry in form.fields.items():
        if entry.kind != "radio" or not entry.options:
            raise ScreeningError(f"unexpected field {name!r} ({entry.kind}) on the screening page")
        if mode == "random":
            chosen[name] = rng.choice(entry.options)
            continue
        correct = answers.get(question_id(name)) if question_id(name) is not None else None
        if correct is None:
            raise ScreeningError(
                f"the study asks screening questions and screening={mode!r} needs their correct answers "
                f"(none for {entry.label or name!r}): pass them in BotConfig.screening_answers (question id -> "
                "answer; manage.py run_bots loads them from the study), or use screening='random'")
        if correct not in entry.options:
            raise ScreeningError(f"the correct answer {correct!r} of {entry.label or name!r} is not among the "
                                 f"options the page offers: {entry.options}")
        chosen[name] = correct if mode == "pass" else rng.choice([o for o in entry.options if o != correct])
    return chosen


def _number_answer(entry: FormField, rng: random.Random) -> str:
    low, high = entry.minimum, entry.maximum
    if low is not None and high is not None:
        whole = range(math.ceil(low), math.floor(high) + 1)
        value = rng.choice(whole) if len(whole) else low
    elif low is not None:
        value = math.ceil(low) + rng.randint(0, 100)
    elif high is not None:
        value = math.floor(high) - rng.randint(0, 100)
    else:
        value = rng.randint(0, 100)
    return str(value)


def questionnaire_choices(form: PageForm, rng: random.Random) -> dict[str, str | list[str]]:
    """A valid answer for every item: one option of a radio group (Likert points, single choice), a non-empty
    subset of a checkbox group (multiple choice), a number within the input's bounds, a short text within its
    length."""
    chosen: dict[str, str | list[str]] = {}
    for name, entry in form.fields.items():
        if entry.kind == "radio":
            chosen[name] = rng.choice(entry.options)
        elif entry.kind == "checkbox":
            chosen[name] = [o for o in entry.options if rng.random() < 0.5] or [rng.choice(entry.options)]
        elif entry.kind == "number":
            chosen[name] = _number_answer(entry, rng)
        else:
            text = rng.choice(FREE_TEXTS)
            chosen[name] = text[: entry.max_length] if entry.max_length else text
    return chosen
