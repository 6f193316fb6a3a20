"""The ASGI entry point of the appliance's web process.

Django's handler serves every request; around it, the process's status hub
(cluster/hub.py: one computation of the live status for every open page, the
API and the metrics) starts with the server (ASGI lifespan, as uvicorn sends
it) or, under a server that sends no lifespan events, at the first request.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")

django_application = get_asgi_application()

from appliance.startup import warm_up_and_freeze  # noqa: E402 - needs Django set up
from cluster import hub, metrics  # noqa: E402 - needs Django set up

warm_up_and_freeze()
# /metrics' failover histogram observes each takeover the hub hears of.
hub.add_default_listener(metrics.observe_message)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    hub.ensure_shared()
    await django_application(scope, receive, send)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            hub.ensure_shared()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await hub.stop_shared()
            await send({"type": "lifespan.shutdown.complete"})
            return
