"""clean_statement: model chatter is removed, unusable output becomes None."""

import pytest

from generation.cleaning import clean_statement

STATEMENT = "We agree that the city should invest in safe bike lanes. We also want roads to stay open for deliveries."


@pytest.mark.parametrize(
    "raw",
    [
        STATEMENT,
        f"Consensus statement: {STATEMENT}",
        f"Statement: {STATEMENT}",
        f"Revised consensus statement:\n{STATEMENT}",
        f"**Consensus Statement:**\n\n{STATEMENT}",
        f"## Consensus statement\n\n{STATEMENT}",
        f"Consensus statement\n{STATEMENT}",
        f"Sure! Here is a consensus statement:\n\n{STATEMENT}",
        f"Sure, here's a statement the whole group could endorse: {STATEMENT}",
        f"Certainly. {STATEMENT}",
        f"Here is a revised consensus statement that addresses the critiques.\n{STATEMENT}",
        f"I'd be happy to help with that!\n\n{STATEMENT}",
        f'"{STATEMENT}"',
        f"\u201c{STATEMENT}\u201d",
        f'Consensus statement: "{STATEMENT}"',
        f"{STATEMENT}\n\nNote: This statement tries to balance both views.",
        f"{STATEMENT} Note: it reflects the opinions of all members.",
        f"{STATEMENT}\n\nI hope this helps! Let me know if you need changes.",
        f"{STATEMENT} This statement reflects the views of every member.",
        f"{STATEMENT}\n\nThe reasoning behind this answer is that both sides matter.",
        f"{STATEMENT}\n\n(Word count: 20)",
        f"  {STATEMENT.replace('. ', '.   ')}  ",
        f"**{STATEMENT}**",
        f"{STATEMENT} We also",  # cut off by max_new_tokens mid-sentence
        f"{STATEMENT} {STATEMENT}",  # a small model looping
    ],
)
def test_chatter_is_removed(raw):
    assert clean_statement(raw) == STATEMENT


def test_markdown_list_becomes_prose():
    raw = "# Consensus\n\n- We want cleaner air.\n- We want safe streets for children and older people."
    assert clean_statement(raw) == "We want cleaner air. We want safe streets for children and older people."


def test_text_after_a_closing_quote_without_opening_is_dropped():
    raw = 'We oppose a fare rise but support better buses for everyone."\n\nThe reasoning is...'
    assert clean_statement(raw) == "We oppose a fare rise but support better buses for everyone."


def test_words_that_look_like_labels_inside_a_statement_survive():
    raw = "Consensus-based decisions are what we all want for our neighbourhood."
    assert clean_statement(raw) == raw
    raw = "Sure footing for families matters to us, so we back stable rents."
    assert clean_statement(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   \n\t ",
        "Sure!",
        "Sure! Here is a consensus statement:",
        "Consensus statement:",
        "We agree.",
        "Note: I could not write a statement.",
        "This statement reflects everyone's views and is balanced.",
        "Should the city ban cars from the centre?",
        "Question: Should the city ban cars from the centre?",
        "Should the city ban cars? Or should it charge them more?",
        "**Consensus Statement:**\n\n",
        '""',
    ],
)
def test_unusable_output_is_none(raw):
    assert clean_statement(raw) is None


def test_repeating_the_question_is_none():
    question = "Should the city ban cars from the centre of town?"
    assert clean_statement("Should the city ban cars from the centre of town.", question=question) is None
    assert clean_statement(STATEMENT, question=question) == STATEMENT


def test_cut_at_sentence_boundary():
    sentences = [f"We agree on point number {i} of the plan." for i in range(40)]
    out = clean_statement(" ".join(sentences), max_chars=200)
    assert len(out) <= 200
    assert out.endswith("plan.")
    assert out.startswith(sentences[0])


def test_cut_without_sentence_boundary_falls_back_to_words():
    raw = "We " + " ".join(["agree"] * 400)
    out = clean_statement(raw, max_chars=100)
    assert len(out) <= 101 and out.endswith("\u2026") and " agre\u2026" not in out


def test_idempotent():
    once = clean_statement(f'Sure! Here is the statement:\n\n"{STATEMENT}"\n\nNote: balanced.')
    assert once == STATEMENT
    assert clean_statement(once) == once


@pytest.mark.parametrize("raw", [
    "<think>The group disagrees on cost. I should balance.</think>\nWe agree that transport should be cheaper.",
    "Let me think about this. The members disagree.\n\nConsensus statement: \"We agree that transport should be cheaper.\"",
    "Reasoning: members 1 and 2 want X.\nFinal answer: We agree that transport should be cheaper.",
    "<think>unfinished reasoning that never closes",
])
def test_reasoning_before_the_statement_is_removed(raw):
    cleaned = clean_statement(raw)
    if "unfinished" in raw:
        assert cleaned is None
    else:
        assert cleaned == "We agree that transport should be cheaper."
