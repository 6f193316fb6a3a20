"""The CARP engine: the data plane that holds and moves the virtual IPs.

Layers (imports point inward only): types -> wire, timers -> fsm -> ports ->
link/netlink -> runner -> __main__. Only bridge.py and bootstep.py may know
Django or Celery. See ../shared/DESIGN.md.
"""
