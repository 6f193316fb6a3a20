"""The example `command` health check shipped in scripts/checks/ (README, Health
checks), run as the node runs it: a program with arguments, no shell."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cluster.lab.lab import REPO

MAIL_QUEUE_SIZE = REPO / "scripts" / "checks" / "mail-queue-size"


def fake_postqueue(tmp_path: Path, queued: int, status: int = 0) -> Path:
    """A `postqueue` that prints ``queued`` JSON lines for ``-j`` and exits ``status``."""
    path = tmp_path / "postqueue"
    lines = "".join(f'{{"queue_id": "Q{i}"}}\n' for i in range(queued))
    path.write_text(
        "#!/usr/bin/env python3\nimport sys\n"
        'assert sys.argv[1:] == ["-j"], sys.argv\n'
        f"sys.stdout.write({lines!r})\n"
        f"sys.stderr.write('fatal: queue directory unreadable')\nsys.exit({status})\n"
    )
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(("queued", "passes"), [(0, True), (3, True), (4, False)])
def test_the_mail_queue_check_passes_up_to_its_limit_and_fails_above(tmp_path, queued, passes):
    done = subprocess.run(
        [str(MAIL_QUEUE_SIZE), "3"],
        env={"POSTQUEUE": str(fake_postqueue(tmp_path, queued)), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode == 0) is passes
    assert done.returncode in (0, 1)
    assert done.stdout == f"{queued} messages queued (limit 3)\n"


def test_the_mail_queue_check_fails_and_says_why_when_postqueue_fails(tmp_path):
    done = subprocess.run(
        [str(MAIL_QUEUE_SIZE)],
        env={"POSTQUEUE": str(fake_postqueue(tmp_path, 0, status=75)), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "postqueue failed (75): fatal: queue directory unreadable" in done.stderr
