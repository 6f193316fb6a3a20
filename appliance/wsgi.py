"""The WSGI entry point of the appliance's web process."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")

application = get_wsgi_application()

from appliance.startup import warm_up_and_freeze  # noqa: E402 - needs Django set up

warm_up_and_freeze()
