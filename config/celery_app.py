"""The Celery application. Workers: ``celery -A config worker -Q celery,generation``."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("deliberation_toolkit")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
