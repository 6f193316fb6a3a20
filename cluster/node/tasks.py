"""The node side of the apply task: the worker that receives it converges its engine.

`cluster/dispatch.py` sends ``statekeys.APPLY_TASK`` by name to ``carp.<node>``;
the Celery app imports this module in workers only (``imports``), so the web
never loads the receiving side. The task runs in the worker's own process (solo
or threads pool) and finds the engine through that worker (`lifecycle.engine_of`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Task, shared_task

from cluster import statekeys
from cluster.node.lifecycle import engine_of

logger = logging.getLogger(__name__)


@shared_task(name=statekeys.APPLY_TASK, bind=True, ignore_result=True)
def apply_node_config(self: Task[Any, Any], node_name: str) -> dict[str, Any]:
    """Make the engine of the worker running this task converge ``node_name``.

    Returns a summary without the passwords. An engine that cannot read the
    database raises: the task fails visibly, and the engine's own retry converges
    the node when the database returns.
    """
    engine = engine_of(self.app, self.request.hostname)
    if engine is None or engine.node != node_name:
        logger.warning(
            "apply for %s: no engine of that node in this worker (%s, pid %d)",
            node_name,
            self.request.hostname,
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
