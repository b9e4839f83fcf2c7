"""Celery tasks for analysis: training a registered reward model (work in analysis.reward.registry), fine-tuning a
generator version (analysis.generator.registry), retraining
a running study's model (analysis.reward.retrain) and offline leave-one-out jobs (analysis.loo_offline); thin.

Progress is written to the RewardModel or AnalysisJob row while it runs and shown in the admin.
"""
from __future__ import annotations

from celery import shared_task


@shared_task(name="analysis.tasks.train_reward_model", acks_late=False, ignore_result=True)
def train_reward_model(*, reward_model_id: int) -> int:
    # Imported here so that web processes loading the admin do not import torch.
    from .reward.registry import reward_model_train

    return reward_model_train(reward_model_id=reward_model_id).pk


@shared_task(name="analysis.tasks.reward_model_retrain", acks_late=False, ignore_result=True)
def reward_model_retrain(*, study_id: int) -> list[int]:
    """A group of the study finished (sent by name from deliberation.services): retrain if K more have."""
    from .reward.retrain import retrain_request, retrain_run

    if not retrain_request(study_id=study_id):
        return []
    return [version.pk for version in retrain_run(study_id=study_id)]


@shared_task(name="analysis.tasks.loo_offline_start", acks_late=False, ignore_result=True)
def loo_offline_start(*, job_id: int) -> int:
    """Fan an offline leave-one-out job out: one subtask per group (each updates the job's progress)."""
    from .models import AnalysisJob

    job = AnalysisJob.objects.get(pk=job_id)
    for group_id in job.params["group_ids"]:
        loo_offline_group.delay(job_id=job_id, group_id=group_id)
    return len(job.params["group_ids"])


@shared_task(name="analysis.tasks.loo_offline_group", acks_late=True, ignore_result=True)
def loo_offline_group(*, job_id: int, group_id: int) -> None:
    """Regenerate one group's winning statement with each member left out and score it (idempotent)."""
    from .loo_offline import job_run_group

    job_run_group(job_id=job_id, group_id=group_id)


@shared_task(name="analysis.tasks.finetune_generator", acks_late=False, ignore_result=True)
def finetune_generator(*, generator_model_id: int, use: bool = False) -> int:
    """Fine-tune a registered generator version (progress on its row, shown in the admin); ``use``: serve it in
    its study once it has finished (a failed fine-tune leaves the study's generator as it was)."""
    from .generator.registry import generator_model_train, generator_model_use

    version = generator_model_train(generator_model_id=generator_model_id)
    if use:
        generator_model_use(study=version.study, generator_model=version)
    return version.pk
