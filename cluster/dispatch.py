"""The web side of the apply task: it only sends it.

After every committed change, ``cluster/services.py`` sends one apply task per
affected node, by name (``statekeys.APPLY_TASK``) to the queue only that
node's worker consumes (``statekeys.apply_queue``). The task names the node
rather than carrying its configuration: the worker reads the desired state from
the database, so a lost, late or repeated message is harmless (level-triggered,
DESIGN rule 1), and no password travels through the broker. The receiving side
is ``cluster/node/tasks.py``, in the node's worker; nothing here imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import current_app
from django.conf import settings

from cluster import choices, statekeys

logger = logging.getLogger(__name__)


def announce_desired_change() -> None:
    """Tell the status hubs (cluster/hub.py) that the desired state changed: the
    one of this process directly, the others with a ``desired`` message on
    ``carp:events``. Runs after a commit; never raises, and waits on Redis at
    most ``DESIRED_TIMEOUT``."""
    import time

    from cluster import desired

    desired.changed()
    try:
        client = statekeys.sync_client(settings.REDIS_URL, timeout=DESIRED_TIMEOUT)
        try:
            message = statekeys.DesiredMessage(time.time())
            client.publish(statekeys.EVENTS_CHANNEL, statekeys.encode_message(message))
        finally:
            client.close()
    except Exception as exc:
        logger.info("could not announce the desired-state change: %s", exc)


DESIRED_TIMEOUT = 0.2


def dispatch_apply(node_names: Iterable[str]) -> None:
    """Send one apply task per node. Never raises and never waits on the broker.

    Runs after a commit; the change is already saved, so a broker that is down
    must not turn it into an error page. The task is not retried here (no
    Celery publish retries, which would block the request): the next change,
    or the engine's own start-up and periodic reads, converge the node anyway.
    Set ``CLUSTER_DISPATCH_APPLY=0`` to send nothing (tests, a single-box setup).
    """
    if not settings.CLUSTER_DISPATCH_APPLY:
        return
    for name in node_names:
        try:
            current_app.send_task(
                statekeys.APPLY_TASK,
                args=(name,),
                queue=statekeys.apply_queue(name),
                expires=choices.APPLY_TASK_EXPIRES_SECONDS,
                retry=False,
            )
        except Exception:
            logger.warning("could not send the apply task for node %s", name, exc_info=True)
