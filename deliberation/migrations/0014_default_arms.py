"""Every existing study gets one arm built from its current settings, and its groups are put in that arm.

The field list is copied here on purpose (a migration must not change when ``models.ARM_SETTINGS`` does later).
"""
from django.db import migrations

ARM_FIELDS = ("generation_backend", "generation_base_url", "generation_model", "generation_params",
              "generator_model_id", "consensus_template_id", "revision_template_id", "best_of_n", "reward_model_id",
              "critique_round", "opinions_as_candidates", "leave_one_out_share")


def default_arms(apps, schema_editor):
    Study = apps.get_model("deliberation", "Study")
    StudyArm = apps.get_model("deliberation", "StudyArm")
    Group = apps.get_model("deliberation", "Group")
    for study in Study.objects.filter(arms__isnull=True).iterator():
        arm = StudyArm.objects.create(study=study, name="default", weight=1,
                                      **{field: getattr(study, field) for field in ARM_FIELDS})
        Group.objects.filter(study=study, arm__isnull=True).update(arm=arm)


def no_arms(apps, schema_editor):
    apps.get_model("deliberation", "Group").objects.update(arm=None)
    apps.get_model("deliberation", "StudyArm").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("deliberation", "0013_study_arms_quotas_pause_bonuses")]

    operations = [migrations.RunPython(default_arms, no_arms)]
