"""The apply task: the web sends it by name; the worker that receives it converges its engine."""

from __future__ import annotations

from unittest import mock

from django.test import override_settings

from appliance.celery import app
from cluster import dispatch, statekeys
from cluster.node import lifecycle, tasks


class StubEngine:
    node = "node1"

    def __init__(self) -> None:
        self.converged = 0

    def converge(self):
        self.converged += 1
        return {"node": "node1", "version": "v1", "changed": True, "virtual_hosts": []}


def run_in_worker(hostname: str | None, node: str):
    """Run the task as the worker named ``hostname`` would (its request's hostname)."""
    task = tasks.apply_node_config
    task.push_request(hostname=hostname)  # type: ignore[call-arg]
    try:
        return task(node)
    finally:
        task.pop_request()


def test_apply_converges_the_engine_of_the_worker_that_runs_it(monkeypatch):
    engine = StubEngine()
    monkeypatch.setitem(lifecycle.engines(app), "node1@box", engine)
    assert run_in_worker("node1@box", "node1")["applied"] is True
    assert engine.converged == 1


def test_apply_for_another_node_or_in_a_worker_without_engine_does_nothing(monkeypatch):
    engine = StubEngine()
    monkeypatch.setitem(lifecycle.engines(app), "node1@box", engine)
    assert run_in_worker("node1@box", "node2") == {"node": "node2", "applied": False}
    # Another worker of the same process has no engine: it must not borrow node1's.
    assert run_in_worker("node9@box", "node1") == {"node": "node1", "applied": False}
    assert engine.converged == 0


@override_settings(CLUSTER_DISPATCH_APPLY=True)
def test_the_web_sends_the_task_by_name_to_the_queue_of_its_node():
    with mock.patch.object(app, "send_task") as send:
        dispatch.dispatch_apply(["node1", "node2"])
    assert [(c.args[0], c.kwargs["queue"], c.kwargs["args"]) for c in send.call_args_list] == [
        (statekeys.APPLY_TASK, "carp.node1", ("node1",)),
        (statekeys.APPLY_TASK, "carp.node2", ("node2",)),
    ]
    assert tasks.apply_node_config.name == statekeys.APPLY_TASK


def test_the_web_never_loads_the_receiving_side():
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup();"
        "import cluster.services, cluster.views, cluster.api.views, cluster.dispatch;"
        "print('cluster.node.tasks' in sys.modules, 'cluster.node.engine' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "appliance.settings"},
    )
    assert out.stdout.split() == ["False", "False"]
