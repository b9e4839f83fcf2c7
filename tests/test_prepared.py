"""core.prepared: a queryset compiled once gives what the ORM gives, for every shape the hot paths use."""
from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Exists, JSONField, OuterRef, Subquery
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from core.prepared import Prepared
from deliberation.models import Draft, Group
from participants.models import Participant, Presence

from .factories import make_group, make_study

pytestmark = pytest.mark.django_db


def test_values_list_with_annotations_and_json_matches_the_orm_and_compiles_once():
    group, members = make_group(n=3)
    Draft.objects.create(group=group, participant=members[0], phase=group.phase, payload={"text": "ünïcode"})
    Presence.objects.create(participant=members[0], channel_name="chan.a", last_seen=group.phase_started_at)

    def build(pk, channel):
        return (Participant.objects.filter(pk=pk)
                .annotate(registered=Exists(Presence.objects.filter(channel_name=channel)),
                          draft=Subquery(Draft.objects.filter(participant_id=OuterRef("pk")).values("payload")[:1],
                                         output_field=JSONField()))
                .values_list("draft", "status", "registered", "group__version", "group_id"))

    prepared = Prepared(build, pk=int, channel=str)
    for member, channel in ((members[0], "chan.a"), (members[1], "chan.a"), (members[2], "nope")):
        assert prepared.rows(pk=member.pk, channel=channel) == list(build(member.pk, channel))
    assert prepared.one(pk=members[0].pk, channel="chan.a")[0] == {"text": "ünïcode"}
    assert len(prepared._compiled) == 1
    with CaptureQueriesContext(connection) as captured:  # Django's cursor: counted like any ORM query
        assert prepared.first(pk=10 ** 9, channel="x") is None
    assert len(captured.captured_queries) == 1
    with pytest.raises(Participant.DoesNotExist):
        prepared.one(pk=10 ** 9, channel="x")


def test_flat_values_and_dicts():
    study = make_study(slug="prep-flat")
    _, members = make_group(study, n=3)
    flat = Prepared(lambda study_id: Participant.objects.filter(study_id=study_id).order_by("pk")
                    .values_list("pk", flat=True), study_id=int)
    assert flat.rows(study_id=study.pk) == [m.pk for m in members]
    dicts = Prepared(lambda pk: Participant.objects.filter(pk=pk).values("status", "position"), pk=int)
    assert dicts.rows(pk=members[1].pk) == list(Participant.objects.filter(pk=members[1].pk)
                                                 .values("status", "position"))


@pytest.mark.django_db(transaction=True)  # outside a transaction, a row lock is refused as the ORM refuses it
def test_model_instances_with_select_related_and_a_row_lock():
    group, _ = make_group(n=3)
    prepared = Prepared(lambda pk: Group.objects.select_for_update(of=("self",), no_key=True)
                        .select_related("study", "arm", "question", "winner_round1").filter(pk=pk), pk=int)
    with pytest.raises(TransactionManagementError):
        prepared.rows(pk=group.pk)
    expected = (group.study.slug, group.question.text, group.arm.name)
    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured:
            locked = prepared.one(pk=group.pk)
            assert (locked.study.slug, locked.question.text, locked.arm.name) == expected
            assert locked.winner_round1 is None
        assert len(captured.captured_queries) == 1  # the related objects came with the row
        assert "FOR NO KEY UPDATE" in captured.captured_queries[0]["sql"]
        assert locked == group and locked.version == group.version and not locked._state.adding
        locked.version += 1
        locked.save(update_fields=["version"])  # a normal instance: it saves
    assert Group.objects.get(pk=group.pk).version == group.version + 1


def test_bad_parameters_are_refused_clearly():
    prepared = Prepared(lambda pk: Participant.objects.filter(pk=pk).values_list("status"), pk=int)
    for bad in (None, "1", True):
        with pytest.raises(TypeError, match="pk"):
            prepared.rows(pk=bad)
    with pytest.raises(TypeError, match="missing"):
        prepared.rows()
    wrapped = Prepared(lambda text: Participant.objects.filter(token__contains=text).values_list("pk"), text=str)
    with pytest.raises(ImproperlyConfigured, match="text"):
        wrapped.rows(text="abc")
    with pytest.raises(TypeError):
        Prepared(lambda x: None, x=float).rows(x=1.0)


def test_a_small_integer_column_takes_a_parameter_and_a_shape_that_varies_with_its_values_is_refused(monkeypatch):
    from core import prepared as module
    from deliberation.models import Rating

    group, members = make_group(n=3)
    rounds = Prepared(lambda group_id, round: Rating.objects.filter(group_id=group_id, round=round)
                      .values_list("pk"), group_id=int, round=int)  # round: a small integer column
    assert rounds.rows(group_id=group.pk, round=1) == []
    # A constant of the query equal to the stand-in of one build: the parameter places differ between the two
    # builds, and that is refused rather than guessed.
    values = iter([7, 8])
    monkeypatch.setattr(module, "_stand_in", lambda kind: next(values))
    clash = Prepared(lambda pk: Participant.objects.filter(pk=pk, position=7).values_list("pk"), pk=int)
    with pytest.raises(ImproperlyConfigured):
        clash.rows(pk=members[0].pk)
