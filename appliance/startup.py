"""What the web process does once, after loading and before serving.

Python's cyclic garbage collector rescans every tracked object on each full
collection; after start-up that is some 70,000 objects of loaded code that
live for ever. Django requests leave cycles (request <-> view <-> response)
that reach the oldest generation, so full collections keep coming, and each
one cost 40 to 190 ms on this machine: most of the alias list's p95. Loading
the URLconf (and with it the views and serializers) and then ``gc.freeze()``
moves those objects out of the collector's sight (bench/list_latency.py: p95
of the full alias list from about 130 ms to about 65 ms).
"""

from __future__ import annotations

import gc

from django.urls import get_resolver


def warm_up_and_freeze() -> None:
    get_resolver().url_patterns  # noqa: B018 - imports every view module now
    gc.collect()
    gc.freeze()
