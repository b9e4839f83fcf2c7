"""The Celery application. Workers: ``celery -A config worker -Q celery,generation``."""
from celery import Celery

from config.environment import require_settings_module

require_settings_module()  # explicit DJANGO_SETTINGS_MODULE, or DELIBERATION_DEV=1 for the development settings

app = Celery("deliberation_toolkit")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
