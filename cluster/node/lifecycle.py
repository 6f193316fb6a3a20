"""The worker bootstep that runs the node's CARP engine inside its Celery worker.

DESIGN rule 3: the engine is not a task (a long task on a Redis broker is
redelivered after the visibility timeout, which would start a second engine). It
is a step of the *worker* blueprint, so it starts before the Consumer step (which
Celery orders last and which blocks retrying an unreachable broker) and is never
restarted with it: a broker outage restarts the consumer, not the worker's steps.

The apply task (cluster/node/tasks.py) runs in this process (``--pool solo`` or
``--pool threads``, NOTES.md) and finds the engine through the worker that runs
it: the step registers its engine on the worker's app under the worker's
hostname, and `engine_of` looks it up with the hostname the task's request
carries. No module global holds it.

Stopping (NOTES.md): the first SIGTERM or SIGINT calls `stop`, a second Ctrl-C or
SIGQUIT calls `terminate`, which does nothing by default and would leave the
worker hanging on the engine's non-daemon thread, so both do the same: wait for
the running tasks (threads pool), then the runner's bow-out and address removal.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from celery import Celery, bootsteps
from celery.worker.consumer import Consumer

from cluster import statekeys

if TYPE_CHECKING:
    from cluster.node.engine import Engine

log = logging.getLogger("cluster.node")

TASK_DRAIN_TIMEOUT = 10.0  # seconds stop() waits for running tasks before stopping the engine
ENGINE_STOP_TIMEOUT = 10.0
_ENGINES = "carp_engines"  # the app attribute: {worker hostname: its engine}


def engines(app: Celery) -> dict[str, Engine]:
    """The engines the bootsteps of this app's workers started, by worker hostname."""
    found: dict[str, Engine] = app.__dict__.setdefault(_ENGINES, {})
    return found


def engine_of(app: Celery, hostname: str | None) -> Engine | None:
    """The engine of the worker named ``hostname`` (a task's ``request.hostname``)."""
    return engines(app).get(hostname or "")


def node_from_queues(queue_names: list[str]) -> str | None:
    """The node named by the worker's only ``carp.<node>`` queue, or None."""
    names = [n for n in map(statekeys.node_from_queue, queue_names) if n is not None]
    if len(names) == 1:
        return names[0]
    if len(names) > 1:
        log.error("the worker consumes several carp.* queues (%s): set CLUSTER_NODE", names)
    return None


def resolve_node(setting: str, queue_names: list[str]) -> str | None:
    """CLUSTER_NODE wins; else the worker's ``-Q carp.<node>``."""
    return setting.strip() or node_from_queues(queue_names)


def wait_for_tasks(timeout: float = TASK_DRAIN_TIMEOUT) -> None:
    """NOTES.md: with the threads pool the step can stop while a task still runs."""
    from celery.worker import state

    deadline = time.monotonic() + timeout
    while state.active_requests and time.monotonic() < deadline:
        time.sleep(0.05)
    if state.active_requests:
        log.warning("stopping the engine with %d task(s) still running",
                    len(state.active_requests))  # fmt: skip


# kombu's reconnect back-off (2 s, then 2 s more each time, up to 30 s) leaves a node
# deaf to its apply tasks for up to half a minute after a broker outage; the tasks
# queued meanwhile wait in Redis. A node has one cheap local connection to retry.
RECONNECT_INTERVALS = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}


class NodeConsumer(Consumer):
    """The worker's consumer (``worker_consumer``) with a short reconnect back-off."""

    def ensure_connected(self, conn: Any) -> Any:
        # Celery passes no intervals to kombu's ensure_connection; shadow the
        # method on this connection object so its defaults become ours.
        conn.ensure_connection = functools.partial(conn.ensure_connection, **RECONNECT_INTERVALS)
        return super().ensure_connected(conn)


class CarpEngineStep(bootsteps.StartStopStep):
    """Starts the node's CARP engine with the worker and stops it (bow-out) with it."""

    label = "CARP engine"
    # After the pool (so stop() runs before the pool's and can wait for its tasks);
    # the Consumer step is `last`, so the engine serves before the broker answers.
    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.engine: Engine | None = None

    def start(self, worker: Any) -> None:
        from django.conf import settings

        # Imported here: the Celery app loads this module before Django is set up.
        from cluster.carp.runner import SystemPorts
        from cluster.node.apply import LocalConfigStore
        from cluster.node.engine import Engine

        queues = list(worker.app.amqp.queues.consume_from or {})
        node = resolve_node(settings.CLUSTER_NODE, queues)
        if node is None:
            log.warning(
                "no CARP engine in this worker: set CLUSTER_NODE or consume one carp.<node>"
                " queue (-Q carp.<node>)"
            )
            return
        pool = getattr(worker.pool_cls, "__module__", "")
        if not pool.endswith(("solo", "thread", "threads")):
            log.warning(
                "pool %s runs tasks in child processes: apply tasks cannot reach the engine;"
                " use --pool threads or --pool solo",
                pool,
            )
        engine = Engine(
            node,
            SystemPorts([]),
            redis_url=settings.REDIS_URL,
            store=LocalConfigStore.for_node(settings.VAR_DIR, node),
            retention_days=settings.CLUSTER_TRANSITION_RETENTION_DAYS,
        )
        engines(worker.app)[worker.hostname] = engine
        log.info("starting the CARP engine of node %s", node)
        engine.start()
        self.engine = engine

    def stop(self, worker: Any) -> None:
        engine, self.engine = self.engine, None
        if engine is None:
            return
        wait_for_tasks()
        engine.stop(ENGINE_STOP_TIMEOUT)
        engines(worker.app).pop(worker.hostname, None)
        log.info("the CARP engine of node %s stopped", engine.node)

    def terminate(self, worker: Any) -> None:
        self.stop(worker)
