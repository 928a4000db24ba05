"""The site's Celery application: ``celery -A host_app.django_site worker``.

Configured from Django's settings (``CELERY_*``); its tasks are in ``tasks.py``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "host_app.django_site.settings")

app = Celery("django_site", include=["host_app.django_site.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
