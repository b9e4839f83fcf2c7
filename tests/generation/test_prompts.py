"""Prompt templates: rendering, truncation and a stable hash."""

import dataclasses
import hashlib

import pytest

from generation.backends.base import ChatMessage
from generation.prompts import (
    CONSENSUS,
    MAX_OPINION_CHARS,
    REVISION,
    STOP_SEQUENCES,
    TEMPLATES,
    PromptTemplate,
    prompt_hash,
    render_consensus,
    render_revision,
)

QUESTION = "Should our city make public transport free?"
OPINIONS = ["Yes, it helps poorer families.\nAnd it cuts traffic.", "No: better spend it on more buses."]


def test_templates_are_versioned_and_frozen():
    assert set(TEMPLATES) == {"consensus", "revision", "question_generation", "prover_helpful", "prover_sneaky"}
    for template in TEMPLATES.values():
        assert template.version and template.system and template.user
    with pytest.raises(dataclasses.FrozenInstanceError):
        CONSENSUS.version = "2"
    assert STOP_SEQUENCES == ("\n\n",)


def test_render_consensus():
    messages = render_consensus(CONSENSUS, QUESTION, OPINIONS)
    assert [m.role for m in messages] == ["system", "user", "assistant"]
    user = messages[1].content
    assert QUESTION in user
    # one bullet per opinion, newlines inside an opinion collapsed to spaces
    assert "- Yes, it helps poorer families. And it cuts traffic.\n- No: better spend it on more buses." in user
    assert "{" not in user  # every placeholder filled
    assert messages[-1] == ChatMessage("assistant", "We")  # prefill in the group's voice


def test_render_without_prefix_has_no_assistant_message():
    plain = dataclasses.replace(CONSENSUS, response_prefix="")
    assert [m.role for m in render_consensus(plain, QUESTION, OPINIONS)] == ["system", "user"]


def test_render_revision_includes_previous_statement_and_critiques():
    messages = render_revision(
        REVISION, QUESTION, OPINIONS, "We want free buses.\nFor all.", ["Too vague.", "Who pays?\nNobody says."]
    )
    user = messages[1].content
    assert "We want free buses. For all." in user
    assert "- Too vague.\n- Who pays? Nobody says." in user
    assert "- No: better spend it on more buses." in user
    # opinions come before critiques, so bullet parsers see opinions first
    assert user.index("- Yes") < user.index("- Too vague.")


def test_long_opinions_are_truncated():
    long = "word " * 1000
    user = render_consensus(CONSENSUS, QUESTION, [long, "short one"])[1].content
    bullet = next(line for line in user.splitlines() if line.startswith("- word"))
    assert len(bullet) <= MAX_OPINION_CHARS + 6
    assert bullet.endswith("...")
    assert "- short one" in user


def test_prompt_stays_small_for_a_large_group():
    opinions = ["x" * 5000] * 8
    messages = render_revision(REVISION, QUESTION, opinions, "y" * 5000, ["z" * 5000] * 8)
    # ~4 characters per token: well under the 135M model's 2048-token context
    assert sum(len(m.content) for m in messages) < 4 * 2048


def test_large_group_shortens_each_opinion():
    user = render_consensus(CONSENSUS, QUESTION, ["word " * 200] * 20)[1].content
    bullets = [line for line in user.splitlines() if line.startswith("- ")]
    assert len(bullets) == 20
    assert all(len(b) <= 4800 // 20 + 6 for b in bullets)


def test_empty_opinions_are_skipped():
    user = render_consensus(CONSENSUS, QUESTION, ["", "  ", "Real opinion."])[1].content
    assert "- Real opinion." in user and "- \n" not in user
    assert "- (none)" in render_consensus(CONSENSUS, QUESTION, [])[1].content


def test_prompt_hash_is_stable_and_sensitive():
    a = render_consensus(CONSENSUS, QUESTION, OPINIONS)
    b = render_consensus(CONSENSUS, QUESTION, list(OPINIONS))
    assert prompt_hash(a) == prompt_hash(b)
    assert len(prompt_hash(a)) == 64 and int(prompt_hash(a), 16) >= 0
    assert prompt_hash(a) != prompt_hash(render_consensus(CONSENSUS, QUESTION, OPINIONS[::-1]))
    changed = dataclasses.replace(CONSENSUS, version="2", system=CONSENSUS.system + " ")
    assert prompt_hash(a) != prompt_hash(render_consensus(changed, QUESTION, OPINIONS))


def test_prompt_hash_known_value():
    # Pins the canonical JSON form: changing it would orphan stored hashes.
    messages = (ChatMessage("system", "S"), ChatMessage("user", "U \u00e9"))
    canonical = '[{"content":"S","role":"system"},{"content":"U \u00e9","role":"user"}]'
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert prompt_hash(messages) == expected


def test_custom_template():
    template = PromptTemplate(name="t", version="9", system="sys", user="Q={question}\n{opinions}")
    messages = render_consensus(template, "q?", ["a", "b"])
    assert messages == (ChatMessage("system", "sys"), ChatMessage("user", "Q=q?\n- a\n- b"))
