"""Fixtures shared by the engine's tests over fakes."""

from __future__ import annotations

import pytest

from cluster.carp.fakes import FakeClock, FakeSegment


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def segment() -> FakeSegment:
    return FakeSegment()
