# Two commands do all the set-up on a fresh Debian machine (as root):
#   make demo   - the main job: a cluster of DEMO_NODES (3) nodes in network namespaces,
#                 and its web UI on http://127.0.0.1:8000/ (Ctrl-C stops it)
#   make test   - the whole suite: lint, types, Django checks, pytest on SQLite and PostgreSQL
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
# PostgreSQL for the second run of the suite; scripts/ensure-postgres.sh starts one if needed.
PG_URL ?= postgres://postgres:postgres@127.0.0.1:5432/appliance

.PHONY: demo demo-root demo-fail demo-restore demo-mail-stop demo-mail-start screenshots test checks lint typecheck djcheck pytest pytest-netns pytest-sqlite pytest-pg debian-deps venv bench format clean

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 is needed (apt-get install python3 python3-venv)"; exit 1; }
	test -x $(PY) || python3 -m venv .venv || { apt-get install -y python3-venv && python3 -m venv .venv; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

debian-deps:
	@scripts/ensure-debian.sh iproute2 tcpdump ucarp redis-server chromium prometheus

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports

# mypy's Django plugin and manage.py load the settings, which with DEBUG off
# (the default) want production secrets; the checks run in development mode.
# pytest gets DEBUG=1 from pyproject.toml.
typecheck djcheck: export DEBUG := 1

typecheck: venv
	.venv/bin/mypy .

djcheck: venv
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

# The namespace tests (root; SQLite: the demo lab's database is a file of its own) and the
# rest of the suite on SQLite: together, the whole suite on SQLite.
pytest-netns: venv debian-deps
	env -u DATABASE_URL .venv/bin/pytest -m netns

pytest-sqlite: venv debian-deps
	env -u DATABASE_URL .venv/bin/pytest -m "not netns"

# The PostgreSQL run is everything that touches the database: the Django suite and the
# node host's tests (tests/node: read_database, the history, the outage at start).
# tests/carp is the protocol engine alone (no Django, no database): SQLite run only.
# So are the nine-node browser test (its showcase server keeps a SQLite database of
# its own) and the schema fuzz test (it checks the API's answers against its schema;
# the same views run on PostgreSQL in the rest of tests/api): 2.5 minutes saved.
pytest-pg: venv
	@scripts/ensure-postgres.sh
	DATABASE_URL=$(PG_URL) .venv/bin/pytest -m "not netns" --ignore=tests/carp \
		--ignore=tests/pages/test_nine_nodes_browser.py --ignore=tests/api/test_schema_fuzz.py

pytest: pytest-netns pytest-sqlite pytest-pg

# The suite in two lanes side by side (-j2), about 8 minutes each: the namespace tests
# mostly wait on protocol timers, the checks (lint, types, Django checks, the other
# tests on SQLite and PostgreSQL) mostly use the CPU. They share nothing: each pytest
# run has its own redis-server and temporary directory, the namespaces and ports are
# unique to the run. Each step's output is held back (--output-sync) and printed whole
# when the step ends, so the lanes never interleave. -k: every step runs, so one run
# shows every failure; any failure fails make test.
test: venv debian-deps
	@echo "make test: the namespace tests run beside the checks; each step prints when it ends"
	@$(MAKE) --no-print-directory -j2 -k --output-sync=target pytest-netns checks \
		|| { echo "make test FAILED: see the steps marked Error above"; exit 1; }
	@echo "make test passed"

# The checks, one after the other, at a lower CPU priority: the namespace tests beside
# them run daemons whose timers must not wait for a core while mypy or the Django tests
# hold it. The sub-make gets MAKEFLAGS without -j and the jobserver (-k, -n and
# variables stay): with them it would take a free job slot and run two checks at once,
# and pytest-netns could wait for its slot behind them.
checks:
	@MAKEFLAGS='$(filter-out -j% --jobserver-auth=%,$(MAKEFLAGS))' nice -n 10 \
		$(MAKE) --no-print-directory lint typecheck djcheck pytest-sqlite pytest-pg

format: venv
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

# demo-root first: without root the demo cannot work, so say why before installing anything.
demo: demo-root venv debian-deps
	scripts/demo.sh

demo-root:
	@python3 -m cluster.lab check-root

# What the status page's "Fail node" / "Restore node" / "Stop mail service" /
# "Start mail service" buttons do, from a shell (demo-restore also starts a dead
# mail service).
demo-fail demo-restore demo-mail-stop demo-mail-start:
	@[ -n "$(NODE)" ] || { echo "Name the node: make $@ NODE=node1"; exit 2; }
	$(PY) -m cluster.lab $(patsubst demo-%,%,$@) $(NODE)

bench: venv
	$(PY) bench/list_latency.py

# The README's pictures: nine nodes, twelve aliases, at 1280 px (and 1920 px, not committed).
screenshots: venv debian-deps
	$(PY) -m tests.showcase --out docs

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache var
