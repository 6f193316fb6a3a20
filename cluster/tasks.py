"""Celery tasks of the control plane.

``apply_node_config`` is routed to the queue ``carp.<node>``, which only that
node's worker consumes. It names the node rather than carrying its
configuration: the worker reads the desired state from the database, so a
lost, late or repeated message is harmless (level-triggered, DESIGN rule 1),
and no password travels through the broker. The worker's engine
(cluster/carp/bridge.py) does the converging; this task only hands it over.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from celery import shared_task
from django.conf import settings

from cluster import choices

logger = logging.getLogger(__name__)


@shared_task(name="cluster.apply_node_config", ignore_result=True)
def apply_node_config(node_name: str) -> dict[str, Any]:
    """Make the engine of this process converge ``node_name`` to its desired state.

    Runs in the node's worker (queue ``carp.<node>``, solo or threads pool), where
    the bootstep started the engine. Returns a summary without the passwords. An
    engine that cannot read the database raises: the task fails visibly, and the
    engine's own retry converges the node when the database returns.
    """
    from cluster.carp.bridge import current_engine

    engine = current_engine()
    if engine is None or engine.node != node_name:
        logger.warning(
            "apply for %s: no engine of that node in this process (pid %d)",
            node_name,
            os.getpid(),
        )
        return {"node": node_name, "applied": False}
    summary = engine.converge()
    logger.info(
        "apply for %s: version %s, %s",
        node_name,
        summary["version"],
        "changed" if summary["changed"] else "already applied",
    )
    return {**summary, "applied": True}


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
