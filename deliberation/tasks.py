"""Celery tasks of the deliberation app: thin wrappers around services."""
from celery import shared_task

from .sweeper import sweep


@shared_task(name="deliberation.tasks.sweep_deadlines", ignore_result=True)
def sweep_deadlines() -> dict:
    return sweep().__dict__
