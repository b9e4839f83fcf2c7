"""python manage.py import_polis DIR [--slug SLUG]"""
from __future__ import annotations

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
from participants.models import Participant


@dataclass
class PolisImportReport:
    study: Study
    participants_created: int
    candidates_created: int
    ratings_written: int
    opinions_written: int


def polis_import(*, conversation: Conversation, slug: str, progress=None) -> PolisImportReport:
    """The conversation as a study with one group; idempotent (re-imports add nothing new, update votes)."""
    with transaction.atomic():
        question, _ = Question.objects.get_or_create(
            text=conversation.topic, defaults={"source": f"polis:{conversation.name}",
                                               "external_id": conversation.url[-64:]})
        study, _ = Study.objects.get_or_create(slug=slug, defaults={
            "title": f"Polis: {conversation.topic}"[:200], "is_active": False, "generation_backend": "polis"})
        study.questions.add(question)
        group = Group.objects.filter(study=study).order_by("id").first() or Group.objects.create(
            study=study, question=question, phase="done", phase_started_at=timezone.now(), outcome="imported",
            finished_at=timezone.now())

        voter_ids = sorted({v.voter_id for v in conversation.votes}
                           | {c.author_id for c in conversation.comments.values() if c.author_id >= 0})
        existing = set(Participant.objects.filter(study=study).values_list("recruitment_id", flat=True))
        new_participants = [
            Participant(study=study, recruitment_id=f"polis-{v}", url_params={"polis_voter_id": v},
                        status=Participant.Status.COMPLETED, group=group, position=i + 1, finished_at=timezone.now())
            for i, v in enumerate(voter_ids) if f"polis-{v}" not in existing]
        Participant.objects.bulk_create(new_participants, batch_size=2000)
        participant_id = {int(r.removeprefix("polis-")): pk for r, pk in
                          Participant.objects.filter(study=study).values_list("recruitment_id", "id")}

        existing = set(Candidate.objects.filter(group=group, round=1).values_list("index", flat=True))
        new_candidates = [
            Candidate(group=group, round=1, index=c.id, text=c.text, raw_text=c.text, backend="polis", model_id="human",
                      template_name="", template_version=0, prompt=[], prompt_sha256="", seed=0, latency_ms=0.0,
                      params={"polis_comment_id": c.id, "author_id": c.author_id, "moderated": c.moderated})
            for c in sorted(conversation.comments.values(), key=lambda c: c.id) if c.id not in existing]
        Candidate.objects.bulk_create(new_candidates, batch_size=2000)
        candidate_id = dict(Candidate.objects.filter(group=group, round=1).values_list("index", "id"))

        ratings = [Rating(participant_id=participant_id[v.voter_id], candidate_id=candidate_id[v.comment_id],
                          group=group, round=1, agreement=AGREEMENT_FOR_VOTE[v.vote], response_seconds=0.0)
                   for v in conversation.votes]
        for start in range(0, len(ratings), 2000):
            Rating.objects.bulk_create(ratings[start : start + 2000], update_conflicts=True,
                                       unique_fields=["participant", "candidate"], update_fields=["agreement"])
            if progress:
                progress(min(start + 2000, len(ratings)), len(ratings))

        authored = defaultdict(list)
        for c in sorted(conversation.comments.values(), key=lambda c: c.id):
            if c.author_id in participant_id and c.text:
                authored[c.author_id].append(c.text)
        opinions = [Opinion(group=group, participant_id=participant_id[a], text="\n".join(texts), response_seconds=0.0)
                    for a, texts in authored.items()]
        Opinion.objects.bulk_create(opinions, update_conflicts=True, unique_fields=["group", "participant"],
                                    update_fields=["text"])
    return PolisImportReport(study, len(new_participants), len(new_candidates), len(ratings), len(opinions))


class Command(BaseCommand):
    help = ("Import a Polis export folder (summary.csv, comments.csv, votes.csv; e.g. "
            "../shared/data/polis/brexit-consensus) as an inactive study: slug from the folder name, the topic as "
            "its question, one group holding every participant (recruitment id 'polis-<voter id>'), each comment "
            "as a human-written candidate (backend 'polis', model 'human'), each participant's latest vote as a "
            "rating with agreement 7 = agree, 4 = pass, 1 = disagree (no quality, no rank), and a participant's own "
            "comments joined as their opinion. Idempotent: re-importing adds what is missing and updates votes.")

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="A Polis conversation export folder.")
        parser.add_argument("--slug", help="Study slug (default: the folder name, slugified).")

    def handle(self, *args, directory: Path, slug: str | None = None, **options):
        if not (directory / "votes.csv").exists() or not (directory / "comments.csv").exists():
            raise CommandError(f"{directory} is not a Polis export folder (needs comments.csv and votes.csv)")
        conversation = load_conversation(directory)
        slug = slug or slugify(directory.resolve().name.replace(".", "-"))
        with tqdm(total=len(conversation.votes), desc="votes", unit="vote",
                  disable=options.get("verbosity", 1) == 0) as bar:
            report = polis_import(conversation=conversation, slug=slug,
                                  progress=lambda done, total: bar.update(done - bar.n))
        self.stdout.write(self.style.SUCCESS(
            f"study {report.study.slug!r} (id {report.study.pk}): {report.participants_created} participants and "
            f"{report.candidates_created} statements created, {report.ratings_written} votes written, "
            f"{report.opinions_written} opinions"))
