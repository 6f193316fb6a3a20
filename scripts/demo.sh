#!/usr/bin/env bash
# Placeholder until the UI lands: migrate and serve.
set -euo pipefail
.venv/bin/python manage.py migrate --noinput
exec .venv/bin/python manage.py runserver 127.0.0.1:8000
