"""Celery task for a verifier round: thin; the work is in legibility.rounds.

Progress is written to the Verifier row while it trains and shown as a bar in the admin. The task trains
the verifier only: improving the prover (``--improve``) and writing the round's solutions (``--provers``)
run with ``legibility_round --inline``, which refuses them without it.
"""
from __future__ import annotations

from celery import shared_task


@shared_task(name="legibility.tasks.train_verifier_round", acks_late=False, ignore_result=True)
def train_verifier_round(*, verifier_id: int, max_train_problems: int | None = None,
                         max_heldout_problems: int | None = None) -> int:
    # Imported here so that web processes loading the admin do not import torch.
    from .rounds import verifier_train

    return verifier_train(verifier_id=verifier_id, max_train_problems=max_train_problems,
                          max_heldout_problems=max_heldout_problems).pk
