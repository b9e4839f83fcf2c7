"""Seed version 1 of each prompt template (frozen copies: later edits in admin add versions)."""
from django.db import migrations

TEMPLATES = [
    {
        "kind": "consensus",
        "version": 1,
        "system": "You help a group find common ground. You write short, neutral statements that every member of the group could agree with.",
        "user": "Question: {question}\n\nOpinions of the group members:\n{opinions}\n\nWrite one consensus statement that the whole group could endorse. Write it in the group's voice (\"We ...\"), in 2 to 5 sentences. Reply with the statement only, no preamble.",
        "response_prefix": "We"
    },
    {
        "kind": "revision",
        "version": 1,
        "system": "You help a group find common ground. You write short, neutral statements that every member of the group could agree with.",
        "user": "Question: {question}\n\nOpinions of the group members:\n{opinions}\n\nPrevious consensus statement:\n{previous}\n\nCritiques of that statement by the members:\n{critiques}\n\nWrite a revised consensus statement that addresses the critiques and that the whole group could endorse. Write it in the group's voice (\"We ...\"), in 2 to 5 sentences. Reply with the statement only, no preamble.",
        "response_prefix": "We"
    },
    {
        "kind": "question_generation",
        "version": 1,
        "system": "You write debate questions on moral and political issues for group discussions.",
        "user": "Here are example questions:\n{seed_questions}\n\nWrite {n} new questions in the same style, on different topics. Each question must be answerable with yes or no and invite disagreement. One question per line, no numbering.",
        "response_prefix": ""
    }
]


def seed(apps, schema_editor):
    PromptTemplate = apps.get_model("generation", "PromptTemplate")
    for row in TEMPLATES:
        PromptTemplate.objects.get_or_create(kind=row["kind"], version=row["version"], defaults=row)


class Migration(migrations.Migration):
    dependencies = [("generation", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
