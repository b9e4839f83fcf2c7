"""python manage.py import_polis DIR [--slug SLUG]"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from tqdm import tqdm

from analysis.polis import AGREEMENT_FOR_VOTE, Conversation, load_conversation
from deliberation.models import Candidate, Group, Opinion, Question, Rating, Study
from deliberation.services import study_arms_ensure
from participants.models import Participant


@dataclass
class PolisImportReport:
    study: Study
    participants_created: int
    candidates_created: int
    ratings_written: int
    opinions_written: int


DEFAULT_GROUPS = 10


def voter_chunk(voter_id: int, groups: int, seed: int) -> int:
    """The group (0..groups-1) of a voter: a seeded hash, so a re-import puts everyone where they were."""
    return int(hashlib.sha256(f"{seed}:{voter_id}".encode()).hexdigest(), 16) % groups


def polis_import(*, conversation: Conversation, slug: str, groups: int = DEFAULT_GROUPS, seed: int = 0,
                 progress=None) -> PolisImportReport:
    """The conversation as a study whose participants are split into ``groups`` groups (by a seeded hash of
    their voter id), each group holding every comment as a candidate and its members' votes and comments.

    A Polis conversation is one room, but a reward model is validated on groups it did not train on: split,
    whole participants are held out. Idempotent (re-imports add nothing new, update votes); a study imported
    with another number of groups is refused rather than mixed.
    """
    if groups < 1:
        raise ValueError("--groups must be at least 1")
    with transaction.atomic():
        question, _ = Question.objects.get_or_create(
            text=conversation.topic, defaults={"source": f"polis:{conversation.name}",
                                               "external_id": conversation.url[-64:]})
        study, _ = Study.objects.get_or_create(slug=slug, defaults={
            # The statements were written by people (candidates record backend "polis"); the study itself gets a
            # valid backend so the admin can save it.
            "title": f"Polis: {conversation.topic}"[:200], "is_active": False,
            "generation_backend": Study.Backend.EXTRACTIVE})
        study.questions.add(question)
        arm = study_arms_ensure(study)[0]  # the admin saves a study with at least one arm
        existing_groups = list(Group.objects.filter(study=study).order_by("id"))
        if existing_groups and len(existing_groups) != groups:
            raise ValueError(f"study {slug!r} was imported with {len(existing_groups)} group(s), not {groups}; "
                               f"re-import with --groups {len(existing_groups)} or into another --slug")
        group_rows = existing_groups or [
            Group.objects.create(study=study, arm=arm, question=question, phase="done", phase_started_at=timezone.now(),
                                 outcome="imported", finished_at=timezone.now()) for _ in range(groups)]

        voter_ids = sorted({v.voter_id for v in conversation.votes}
                           | {c.author_id for c in conversation.comments.values() if c.author_id >= 0})
        existing = set(Participant.objects.filter(study=study).values_list("recruitment_id", flat=True))
        new_participants = [
            Participant(study=study, recruitment_id=f"polis-{v}", url_params={"polis_voter_id": v},
                        status=Participant.Status.COMPLETED, group=group_rows[voter_chunk(v, groups, seed)],
                        position=i + 1, finished_at=timezone.now())
            for i, v in enumerate(voter_ids) if f"polis-{v}" not in existing]
        Participant.objects.bulk_create(new_participants, batch_size=2000)
        members = {int(r.removeprefix("polis-")): (pk, group_id) for r, pk, group_id in
                   Participant.objects.filter(study=study).values_list("recruitment_id", "id", "group_id")}

        comments = sorted(conversation.comments.values(), key=lambda c: c.id)
        existing = set(Candidate.objects.filter(group__study=study, round=1).values_list("group_id", "index"))
        new_candidates = [
            Candidate(group=group, round=1, index=c.id, text=c.text, raw_text=c.text, backend="polis", model_id="human",
                      template_name="", template_version=0, prompt=[], prompt_sha256="", seed=0, latency_ms=0.0,
                      params={"polis_comment_id": c.id, "author_id": c.author_id, "moderated": c.moderated})
            for group in group_rows for c in comments if (group.pk, c.id) not in existing]
        Candidate.objects.bulk_create(new_candidates, batch_size=2000)
        candidate_id = {(g, index): pk for g, index, pk in
                        Candidate.objects.filter(group__study=study, round=1).values_list("group_id", "index", "id")}

        ratings = []
        for v in conversation.votes:
            participant_id, group_id = members[v.voter_id]
            ratings.append(Rating(participant_id=participant_id, candidate_id=candidate_id[(group_id, v.comment_id)],
                                  group_id=group_id, round=1, agreement=AGREEMENT_FOR_VOTE[v.vote],
                                  response_seconds=0.0))
        for start in range(0, len(ratings), 2000):
            Rating.objects.bulk_create(ratings[start : start + 2000], update_conflicts=True,
                                       unique_fields=["participant", "candidate"], update_fields=["agreement"])
            if progress:
                progress(min(start + 2000, len(ratings)), len(ratings))

        authored = defaultdict(list)
        for c in comments:
            if c.author_id in members and c.text:
                authored[c.author_id].append(c.text)
        opinions = [Opinion(group_id=members[a][1], participant_id=members[a][0], text="\n".join(texts),
                            response_seconds=0.0) for a, texts in authored.items()]
        Opinion.objects.bulk_create(opinions, update_conflicts=True, unique_fields=["group", "participant"],
                                    update_fields=["text"])
    return PolisImportReport(study, len(new_participants), len(new_candidates), len(ratings), len(opinions))


class Command(BaseCommand):
    help = ("Import a Polis export folder (summary.csv, comments.csv, votes.csv; e.g. "
            "../shared/data/polis/brexit-consensus) as an inactive study: slug from the folder name, the topic as "
            "its question, the participants (recruitment id 'polis-<voter id>') split into --groups groups by a "
            "seeded hash of their voter id (so a reward model can hold whole participants out for validation), "
            "each comment as a human-written candidate in every group (backend 'polis', model 'human'), each "
            "participant's latest vote as a "
            "rating with agreement 7 = agree, 4 = pass, 1 = disagree (no quality, no rank), and a participant's own "
            "comments joined as their opinion. Idempotent: re-importing adds what is missing and updates votes.")

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="A Polis conversation export folder.")
        parser.add_argument("--slug", help="Study slug (default: the folder name, slugified).")
        parser.add_argument("--groups", type=int, default=DEFAULT_GROUPS,
                            help="Number of groups to split the participants into by a seeded hash of their voter "
                                 "id (default: %(default)s; 1 = the whole conversation as one group, which leaves "
                                 "nothing to hold out). A re-import must use the same number.")
        parser.add_argument("--seed", type=int, default=0,
                            help="Seed of the split into groups (default: %(default)s).")

    def handle(self, *args, directory: Path, slug: str | None = None, groups: int = DEFAULT_GROUPS, seed: int = 0,
               **options):
        if not (directory / "votes.csv").exists() or not (directory / "comments.csv").exists():
            raise CommandError(f"{directory} is not a Polis export folder (needs comments.csv and votes.csv)")
        conversation = load_conversation(directory)
        slug = slug or slugify(directory.resolve().name.replace(".", "-"))
        with tqdm(total=len(conversation.votes), desc="votes", unit="vote",
                  disable=options.get("verbosity", 1) == 0) as bar:
            try:
                report = polis_import(conversation=conversation, slug=slug, groups=groups, seed=seed,
                                      progress=lambda done, total: bar.update(done - bar.n))
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(
            f"study {report.study.slug!r} (id {report.study.pk}): {report.participants_created} participants and "
            f"{report.candidates_created} statements created, {report.ratings_written} votes written, "
            f"{report.opinions_written} opinions"))
