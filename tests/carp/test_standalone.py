"""The standalone daemon needs none of the appliance's frameworks: it runs, and
decodes a real ucarp capture, with Django, Celery, kombu and Redis unimportable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CAPTURE = Path(__file__).parent / "data" / "ucarp-vhid42-eth.pcap"

# A meta-path finder that refuses the frameworks, as a machine without them would.
WITHOUT_FRAMEWORKS = """
import sys
BLOCKED = {"django", "celery", "kombu", "redis", "rest_framework"}

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, Absent())
from cluster.carp.__main__ import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
print("frameworks loaded:", loaded)
sys.exit(code)
"""


def run_without_frameworks(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_FRAMEWORKS, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
        check=False,
    )


def test_the_daemon_decodes_a_capture_without_django_celery_or_redis():
    done = run_without_frameworks(
        "decode", str(CAPTURE), "--pass", "s3cret", "--addr", "192.0.2.100"
    )
    assert done.returncode == 0, done.stderr
    assert "frameworks loaded: []" in done.stdout
    assert "23 of 23 hmac ok" in done.stdout


def test_the_daemon_refuses_a_bad_run_command_line_without_the_frameworks():
    # `run` builds its whole configuration before it opens a socket: a VIP that is
    # the node's own address is refused (status 2) by the engine's own code alone.
    done = run_without_frameworks(
        "run", "-i", "eth0", "-s", "192.0.2.11", "-v", "42", "-p", "s3cret", "-a", "192.0.2.11"
    )
    assert done.returncode == 2, done.stderr
    assert "own address" in done.stderr
    assert "ModuleNotFoundError" not in done.stderr
