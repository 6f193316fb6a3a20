"""Health checks as the node runs them: the one typed contract between the desired
state (``cluster.services``, which builds a `CheckSpec` per check a node runs) and
the node host (``cluster.node``, which runs them and reports a `CheckStatus` per
check in its heartbeat).

Pure data: no Django, no I/O. ``to_data``/``from_data`` are the one conversion to
and from plain JSON data (the node's local copy, the configuration digest, the
heartbeat).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Self

KINDS = ("smtp", "tcp", "http", "disk", "command")

# The demotion source a failing check sets on the runner (carp.types.DemotionSource).
SOURCE_PREFIX = "health:"


def source_name(check: str) -> str:
    """``health:<name>``: the runner's demotion source for one check."""
    return f"{SOURCE_PREFIX}{check}"


@dataclass(frozen=True)
class CheckSpec:
    """One check one node runs.

    ``host`` empty means the node's own address; ``port`` 0 means the kind's
    default. ``path`` is the URL path (http) or the file system path (disk);
    ``argv`` is the program and its arguments (command, run without a shell).
    """

    name: str
    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    expect_status: int = 200
    min_free_percent: int = 10
    argv: tuple[str, ...] = ()
    starttls: bool = False
    interval_ms: int = 2000
    timeout_ms: int = 1000
    rise: int = 2
    fall: int = 3
    weight: int = 240
    # Boot gating: the node starts demoted until the check has passed `rise` times
    # (True) or once (False).
    boot_needs_rise: bool = False
    check_id: int = 0
    version: int = 0

    def to_data(self) -> dict[str, Any]:
        data = asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        if "argv" in values:
            values["argv"] = tuple(str(a) for a in values["argv"])
        return cls(**values)


@dataclass(frozen=True)
class CheckStatus:
    """One check's state on one node, as its heartbeat reports it.

    ``passing`` is None until the check has a result. ``count`` is the number of
    consecutive results equal to the last one. ``gating`` is True while boot
    gating still holds the node demoted for this check.
    """

    name: str
    kind: str
    passing: bool | None = None
    count: int = 0
    message: str = ""
    last_at: float | None = None
    changed_at: float | None = None
    demotion: int = 0
    gating: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})
