"""Fine-tuning the statement generator on statements the groups endorsed (``train`` is Django-free; ``registry``
is what the command, the Celery task and the admin call)."""
