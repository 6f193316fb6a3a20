#!/usr/bin/env bash
# `make demo`: prepare the database and the demo users, then serve the console
# on http://127.0.0.1:8000/ (static files served by WhiteNoise).
#
# Idempotent: the secrets and the users' passwords are generated on the first
# run, kept under var/ (mode 0600) and reused; the demo nodes and aliases are
# only created when the database has none. The cluster issue adds the node
# namespaces and their workers.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# VAR_DIR (appliance/settings.py) holds the SQLite database, the collected
# static files and, here, the generated secrets.
VAR="${VAR_DIR:-$PWD/var}"
export VAR_DIR="$VAR"
mkdir -p "$VAR"

# The keys appliance/settings.py reads through its *_FILE variables.
new_secret() {
    [ -s "$1" ] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$1")
}
new_secret "$VAR/secret-key"
new_secret "$VAR/cluster-secret-key"
export SECRET_KEY_FILE="$VAR/secret-key"
export CLUSTER_SECRET_KEY_FILE="$VAR/cluster-secret-key"
export DEBUG="${DEBUG:-0}"
# No node worker runs yet, so no apply task is queued for one.
export CLUSTER_DISPATCH_APPLY="${CLUSTER_DISPATCH_APPLY:-0}"

"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput --verbosity 0
"$PY" manage.py demo_setup --var-dir "$VAR" --url "http://127.0.0.1:8000/"
echo "Serving the console on http://127.0.0.1:8000/ (Ctrl-C to stop)"
exec "$PY" manage.py runserver --noreload 127.0.0.1:8000
