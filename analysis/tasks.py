"""Celery task for training a registered reward model: thin; the work is in analysis.reward.registry.

Progress is written to the RewardModel row while it runs and shown in the admin.
"""
from __future__ import annotations

from celery import shared_task


@shared_task(name="analysis.tasks.train_reward_model", acks_late=False, ignore_result=True)
def train_reward_model(*, reward_model_id: int) -> int:
    # Imported here so that web processes loading the admin do not import torch.
    from .reward.registry import reward_model_train

    return reward_model_train(reward_model_id=reward_model_id).pk
