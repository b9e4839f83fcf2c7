"""python manage.py replay_generation GROUP_ID: regenerate a group's candidates from stored provenance."""
import json

from django.core.management.base import BaseCommand, CommandError

from deliberation.models import Group
from generation.replay import replay_group


class Command(BaseCommand):
    help = ("Regenerate a group's candidates from their stored prompt, seed and parameters (default: with the "
            "embedded backend) and report, as JSON, whether each text matches the stored one.")

    def add_arguments(self, parser):
        parser.add_argument("group_id", type=int)
        parser.add_argument("--round", type=int, choices=[1, 2])
        parser.add_argument("--backend", default="embedded")
        parser.add_argument("--strict", action="store_true", help="Exit with status 1 if any text differs.")
        parser.add_argument("--show-texts", action="store_true", help="Include stored and replayed texts.")

    def handle(self, *args, group_id: int, round=None, backend: str, strict: bool, show_texts: bool, **options):
        if not Group.objects.filter(pk=group_id).exists():
            raise CommandError(f"No group {group_id}")
        rows = replay_group(group_id, round=round, backend_name=backend)
        if not rows:
            raise CommandError(f"Group {group_id} has no stored candidates")
        report = {
            "group": group_id, "backend": backend, "candidates": len(rows),
            "matching": sum(r.match for r in rows),
            "rows": [{"candidate": r.candidate_id, "round": r.round, "index": r.index, "seed": r.seed,
                      "match": r.match, **({"stored": r.stored, "replayed": r.replayed} if show_texts else {})}
                     for r in rows],
        }
        self.stdout.write(json.dumps(report, indent=2))
        if strict and report["matching"] != len(rows):
            raise CommandError(f"{len(rows) - report['matching']} of {len(rows)} texts differ")
