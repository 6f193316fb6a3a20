"""The CARP engine: the data plane that holds and moves the virtual IPs.

Layers (imports point inward only): types -> wire, timers -> fsm -> ports ->
link/netlink/arp -> runner -> __main__ (the standalone daemon). No module here
knows Django, Celery or Redis (an import-linter contract in pyproject.toml):
what runs around the engine on an appliance node is the node host,
``cluster/node/``. See ../shared/DESIGN.md.
"""
