"""The demo cluster on one machine (DESIGN.md): network namespaces, a private
Redis, one Celery worker per node, a real SMTP service (aiosmtpd). Used by
``make demo``, by the root-only end-to-end tests and by the benchmarks."""
