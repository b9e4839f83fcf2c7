#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

Needs DJANGO_SETTINGS_MODULE, or DELIBERATION_DEV=1 for the development settings (config/environment.py).
"""
import sys


def main() -> None:
    from django.core.exceptions import ImproperlyConfigured

    try:
        # Importing the config package loads the Celery app, which runs the same check.
        from config.environment import require_settings_module

        require_settings_module()
    except ImproperlyConfigured as exc:
        sys.exit(f"manage.py: {exc}")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
