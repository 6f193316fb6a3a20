"""The apply task hands the work to this process's engine."""

from __future__ import annotations

from cluster import tasks
from cluster.carp import bridge


class StubEngine:
    node = "node1"

    def __init__(self) -> None:
        self.converged = 0

    def converge(self):
        self.converged += 1
        return {"node": "node1", "version": "v1", "changed": True, "virtual_hosts": []}


def test_apply_converges_the_engine_of_its_node(monkeypatch):
    engine = StubEngine()
    monkeypatch.setattr(bridge, "_current", engine)
    assert tasks.apply_node_config("node1")["applied"] is True
    assert engine.converged == 1


def test_apply_for_another_node_or_without_engine_does_nothing(monkeypatch):
    engine = StubEngine()
    monkeypatch.setattr(bridge, "_current", engine)
    assert tasks.apply_node_config("node2") == {"node": "node2", "applied": False}
    monkeypatch.setattr(bridge, "_current", None)
    assert tasks.apply_node_config("node1") == {"node": "node1", "applied": False}
    assert engine.converged == 0
