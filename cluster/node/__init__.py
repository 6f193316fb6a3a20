"""The node host: what runs on a node around the CARP engine (DESIGN.md).

`cluster/carp/` is the protocol engine and knows no Django, Celery or Redis;
this package is where a node meets them. One module per concern:

* `lifecycle`: the worker bootstep that starts and stops the engine with the
  Celery worker, and finds the engine of the worker an apply task runs in;
* `tasks`: the node side of the apply task (`cluster/dispatch.py` sends it);
* `engine`: one node's runner, its configuration and its publishers;
* `apply`: the level-triggered converge input: the node's desired state as the
  engine's configuration, its version, and the encrypted local copy;
* `state`: live state, heartbeat and demotion sources to Redis
  (`cluster/statekeys.py` is the contract);
* `history`: the transition history, through `cluster/services.py`, buffered
  while the database is down;
* `outage`: the one rate-limited "dependency unreachable" log.

Health checks (a demotion source ``health:<check>`` each) get a module of their own here.
"""
