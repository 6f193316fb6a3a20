#!/usr/bin/env bash
# `make demo`: the demo cluster on one machine (DESIGN.md), run by
# `python -m cluster.lab demo` (cluster/lab/supervisor.py): network namespaces
# for the nodes and a client, a private Redis, one Celery worker (with its CARP
# engine) and a mail service (aiosmtpd) per node, the console on
# http://127.0.0.1:8000/. Ctrl-C stops it all and removes the namespaces.
#
# Environment: DEMO_NODES (3; up to 9), VAR_DIR (var/: the SQLite database, the
# generated secrets and passwords, and demo/ with the logs), REDIS_URL (unset:
# a private redis-server on a Unix socket under var/demo/). Every process runs
# with DEBUG=0 and the secrets generated in VAR_DIR (cluster/lab/lab.py, Lab.env).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m cluster.lab demo "$@"
