"""The Celery app of the appliance, configured from Django's CELERY_* settings.

Node workers run ``celery -A appliance worker -Q carp.<node> --pool threads``
(or ``--pool solo``); the CARP engine starts from a worker bootstep (DESIGN
rule 3, cluster/node/lifecycle.py), so apply tasks run in the engine's process.
Workers import the receiving side of the apply task (cluster/node/tasks.py);
the web only sends it, by name (cluster/dispatch.py).
"""

from __future__ import annotations

import os

from celery import Celery

from cluster.node.lifecycle import CarpEngineStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")

app = Celery("appliance")
app.config_from_object("django.conf:settings", namespace="CELERY")

app.steps["worker"].add(CarpEngineStep)
