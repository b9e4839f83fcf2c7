"""What a study may do with a participant's words, in plain language: the consent disclosure and the opinion notice.

No models or database: a deliberation study describes its settings as a ``DeliberationUse`` and these
functions turn them into text, in the language active (the study's: ``Study.consent_disclosure`` and the snapshot
set it; each paragraph is one translatable sentence group). The experimenter's consent text (ethics-approved
wording) is never rewritten or translated; the consent page shows it verbatim and adds ``disclosure`` below it.
``consent_sha256`` fingerprints exactly the two texts a participant saw, so a stored hash proves which wording they
agreed to (``participants.models.ConsentVersion`` keeps every version's texts).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.utils.translation import gettext, gettext_lazy

RESEARCH_USE = gettext_lazy(
    "Everything you write and rate is stored with your Prolific id, the study link's parameters, your browser's "
    "name and the times you took, and is used for research: analyses and reports, and to train and evaluate AI "
    "models (for example models that predict which statements people agree with, or that write group statements). "
    "It may be exported as a research data set; the toolkit's exports leave out your Prolific id unless the "
    "researchers explicitly include it.")


@dataclass(frozen=True)
class DeliberationUse:
    """The settings of a deliberation study that decide what happens to a participant's text."""

    opinions_as_candidates: bool = False
    backend: str = "embedded"  # embedded | openai | extractive | recorded (deliberation.models.Study.Backend)
    generation_base_url: str = ""
    leave_one_out: bool = False
    bot_takeover: bool = False
    reward_model: bool = False  # best-of-N: a reward model scores statements per member


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or gettext("a separate server")
    except ValueError:
        return gettext("a separate server")


def deliberation_disclosure(use: DeliberationUse) -> str:
    """Paragraphs (blank-line separated) saying what any setting of this study may do with a participant's text."""
    paragraphs = [gettext(
        "What you type is saved on the study's server as you type, before you press Submit. If a step's time "
        "runs out before you submit, the text you had typed is used as your answer.")]
    if use.backend == "extractive":
        paragraphs.append(gettext(
            "Statements for your group are built from sentences copied word for word from the members' opinions. "
            "Your group sees these statements, without names."))
    else:
        paragraphs.append(gettext(
            "An AI mediator writes statements for your group from the members' opinions and critiques; these "
            "statements may repeat or closely paraphrase your words. Your group sees them, without names."))
    if use.opinions_as_candidates:
        paragraphs.append(gettext(
            "Your opinion is also shown word for word, without your name, to the other members of your group, "
            "who rate and rank it together with the AI mediator's statements."))
    if use.backend == "openai":
        paragraphs.append(gettext(
            "To write these statements, the members' opinions and critiques are sent to a separate text-generation "
            "server (%(host)s), outside the web server you are using.") % {"host": _host(use.generation_base_url)})
    elif use.backend == "embedded":
        paragraphs.append(gettext("The AI mediator runs on the study's own servers; your text is not sent to an "
                                  "outside service."))
    else:
        paragraphs.append(gettext("Your text is not sent to an outside service."))
    if use.leave_one_out:
        paragraphs.append(gettext(
            "In some groups, by design, one member's opinion and critique are not given to the AI mediator. Who "
            "that is is recorded for the research but never shown to anyone in the group."))
    if use.reward_model:
        paragraphs.append(gettext(
            "A model trained on earlier participants' ratings predicts, from your ratings and texts in this study, "
            "how much you would agree with each statement; these predictions choose which statements your group "
            "sees."))
    if use.bot_takeover:
        paragraphs.append(gettext(
            "If you leave or lose your connection for a while during a group, a computer program may answer in "
            "your place so that the group can finish; it may submit the text you had typed but not sent. Its "
            "answers are marked as the program's, not yours."))
    paragraphs.append(str(RESEARCH_USE))
    return "\n\n".join(paragraphs)


def judging_disclosure() -> str:
    """What a legibility study does with a judge's answers (judges write no free text)."""
    return gettext(
        "Your answers (true or false), how long you took on each solution, your Prolific id, the study link's "
        "parameters and your browser's name are stored and used for research: analyses and reports, and to "
        "train and evaluate AI models that write or check solutions. They may be exported as a research data "
        "set; the toolkit's exports leave out your Prolific id unless the researchers explicitly include it.")


def opinion_notice(use: DeliberationUse) -> str:
    """The opinion page's line on who sees the opinion; says the same as ``deliberation_disclosure``."""
    extractive = use.backend == "extractive"
    if use.opinions_as_candidates and extractive:
        seen = gettext("Other members of your group will see your opinion word for word, without your name, and "
                       "rate it. The AI mediator also uses everyone's opinions to write statements for the group.")
    elif use.opinions_as_candidates:
        seen = gettext("Other members of your group will see your opinion word for word, without your name, and "
                       "rate it. The AI mediator also uses everyone's opinions to write statements for the group, "
                       "which may repeat your words.")
    elif extractive:
        seen = gettext("Other members will not see your whole opinion, but the statements for the group are built "
                       "from sentences copied word for word from everyone's opinions, without names.")
    else:
        seen = gettext("Other members will not see your opinion as you wrote it; the AI mediator uses everyone's "
                       "opinions to write statements for the group, which may repeat your words.")
    if use.backend == "openai":
        seen += " " + gettext("Your text is sent to a separate text-generation server (%(host)s) for this.") % {
            "host": _host(use.generation_base_url)}
    return seen + " " + gettext("What you type is saved as you type.")


def consent_sha256(experimenter_text: str, disclosure: str) -> str:
    """Hex SHA-256 of the UTF-8 JSON ``{"consent_text": ..., "disclosure": ...}`` (keys sorted, no ASCII escaping):
    unambiguous about where one text ends, and reproducible from a stored version with any JSON library."""
    payload = json.dumps({"consent_text": experimenter_text, "disclosure": disclosure}, sort_keys=True,
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
