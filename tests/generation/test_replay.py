"""Replay regenerates stored candidates from provenance with the real embedded model."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from deliberation.models import Candidate
from deliberation.services import opinion_submit
from generation.services import candidates_generate

from ..factories import make_group, make_study

pytestmark = [pytest.mark.model, pytest.mark.django_db(transaction=True)]


def test_replay_reproduces_the_stored_texts_and_detects_a_change():
    study = make_study(slug="replay", generation_backend="embedded", num_candidates=2,
                       generation_params={"max_new_tokens": 32, "temperature": 0.8})
    group, members = make_group(study, n=3)
    for member, text in zip(members, ["Taxes on bread hurt the poor most of all.",
                                      "Schools need the money that food taxes raise.",
                                      "Keep taxes on sweets, drop them on vegetables."]):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    out = io.StringIO()
    call_command("replay_generation", str(group.pk), "--strict", stdout=out)
    report = json.loads(out.getvalue())
    assert report["candidates"] == 2 and report["matching"] == 2
    Candidate.objects.filter(group=group, index=0).update(raw_text="tampered")
    with pytest.raises(CommandError, match="1 of 2 texts differ"):
        call_command("replay_generation", str(group.pk), "--strict", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No group"):
        call_command("replay_generation", "999999")
