"""Celery tasks of the control plane.

``apply_node_config`` is routed to the queue ``carp.<node>``, which only that
node's worker consumes. It names the node rather than carrying its
configuration: the worker reads the desired state from the database, so a
lost, late or repeated message is harmless (level-triggered, DESIGN rule 1),
and no password travels through the broker. The engine bridge (a later
issue) replaces the body; for now it logs what it would apply.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from celery import shared_task
from django.conf import settings

from cluster import choices

logger = logging.getLogger(__name__)


@shared_task(name="cluster.apply_node_config", ignore_result=True)
def apply_node_config(node_name: str) -> dict[str, Any]:
    """Converge ``node_name`` to its desired state (a stub until the engine lands).

    Returns what it would apply, without the passwords.
    """
    from cluster.services import desired_virtual_hosts

    wanted = desired_virtual_hosts(node_name)
    summary: dict[str, Any] = {
        "node": node_name,
        "virtual_hosts": [
            (vh["interface"], vh["vhid"], vh["version"], vh["advskew"]) for vh in wanted
        ],
    }
    logger.info("apply for %s: %d virtual host(s)", node_name, len(summary["virtual_hosts"]))
    return summary


def dispatch_apply(node_names: Iterable[str]) -> None:
    """Send one apply task per node. Never raises and never waits on the broker.

    Runs after a commit; the change is already saved, so a broker that is down
    must not turn it into an error page. The task is not retried here (no
    Celery publish retries, which would block the request): the next change,
    or the engine's own start-up apply, converges the node anyway. Set
    ``CLUSTER_DISPATCH_APPLY=0`` to send nothing (tests, a single-box setup).
    """
    if not settings.CLUSTER_DISPATCH_APPLY:
        return
    for name in node_names:
        try:
            apply_node_config.apply_async(
                args=(name,),
                queue=f"carp.{name}",
                expires=choices.APPLY_TASK_EXPIRES_SECONDS,
                retry=False,
            )
        except Exception:
            logger.warning("could not send the apply task for node %s", name, exc_info=True)
