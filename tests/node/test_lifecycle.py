"""The worker bootstep (cluster/node/lifecycle.py) and its place in the worker blueprint."""

from __future__ import annotations

from celery import bootsteps

from appliance.celery import app
from cluster.node import lifecycle as bootstep


def test_cluster_node_wins_over_the_queue_name():
    assert bootstep.resolve_node("node7", ["carp.node1"]) == "node7"
    assert bootstep.resolve_node("", ["celery", "carp.node1"]) == "node1"


def test_no_node_without_exactly_one_carp_queue():
    assert bootstep.resolve_node("", ["celery"]) is None
    assert bootstep.resolve_node("", ["carp.node1", "carp.node2"]) is None
    assert bootstep.resolve_node("  ", ["carp."]) is None


def test_the_step_is_in_the_worker_blueprint_and_terminate_stops_like_stop():
    assert bootstep.CarpEngineStep in app.steps["worker"]
    # NOTES.md: Celery's default terminate() does nothing and the worker would hang.
    assert bootstep.CarpEngineStep.terminate is not bootsteps.StartStopStep.terminate


def test_the_engine_starts_before_the_consumer_which_blocks_on_the_broker():
    from celery.worker import WorkController

    blueprint = WorkController.Blueprint(steps=app.steps["worker"])
    steps = blueprint.steps = blueprint.claim_steps()  # as Blueprint.apply does
    order = [s.name for s in blueprint._finalize_steps(steps)]  # type: ignore[attr-defined]
    engine = bootstep.CarpEngineStep.name
    assert order.index(engine) < order.index("celery.worker.components.Consumer")
    assert order.index("celery.worker.components.Pool") < order.index(engine)


def test_the_worker_retries_the_broker_for_ever():
    assert app.conf.broker_connection_max_retries is None


class RecordingConnection:
    """Stands in for kombu's Connection: records how the consumer asks to connect."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    def ensure_connection(self, *args: object, **kwargs: object) -> RecordingConnection:
        self.calls.append(kwargs)
        return self


def test_the_worker_reconnects_to_the_broker_every_2_s_at_most():
    # kombu's default back-off grows to 30 s: a node would miss its apply tasks
    # for that long after a Redis outage.
    assert app.conf.worker_consumer == "cluster.node.lifecycle:NodeConsumer"
    consumer = bootstep.NodeConsumer.__new__(bootstep.NodeConsumer)
    consumer.app = app
    consumer.first_connection_attempt = False
    consumer.broker_connection_retry_attempt = 0
    conn = RecordingConnection()
    assert consumer.ensure_connected(conn) is conn
    (kwargs,) = conn.calls
    assert kwargs["interval_max"] == 2.0
    assert kwargs["interval_start"] == 0.5
    assert "callback" in kwargs  # Celery's own arguments still reach kombu
