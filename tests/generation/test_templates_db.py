"""Prompt templates as versioned data: migrations seed v1, admin edits add versions, candidates point at them."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from generation.models import PromptTemplate
from generation.prompts import QUESTION_GENERATION, render_question_generation

pytestmark = pytest.mark.django_db


def test_latest_exists_and_editing_in_admin_saves_a_new_version(admin_client):
    v1 = PromptTemplate.latest("consensus")
    assert v1.version == 1 and "{opinions}" in v1.user
    response = admin_client.post(f"/admin/generation/prompttemplate/{v1.pk}/change/", {
        "kind": "consensus", "system": v1.system, "user": v1.user + " Be brief.", "response_prefix": "We",
        "notes": "shorter"})
    assert response.status_code == 302
    v1.refresh_from_db()
    assert not v1.user.endswith("Be brief.")  # the version candidates point at is untouched
    latest = PromptTemplate.latest("consensus")
    assert latest.version == 2 and latest.user.endswith("Be brief.") and latest.created_by == "admin"


def test_unknown_placeholders_are_refused():
    template = PromptTemplate(kind="consensus", version=9, system="s", user="{question} {secret}")
    with pytest.raises(ValidationError, match="secret"):
        template.full_clean()


def test_question_generation_template_renders_seed_questions():
    messages = render_question_generation(QUESTION_GENERATION, ["Should X?", "Should Y?"], 5)
    assert "- Should X?" in messages[-1].content and "Write 5 new questions" in messages[-1].content
