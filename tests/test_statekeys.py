"""REDIS_URL in kombu's form reaches redis-py as the same socket."""

from __future__ import annotations

from cluster import statekeys


def test_kombus_socket_url_becomes_redis_pys_and_tcp_urls_stay() -> None:
    assert statekeys.redis_py_url("redis+socket:///run/x/redis.sock") == "unix:///run/x/redis.sock"
    assert statekeys.redis_py_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert statekeys.is_unix_socket("redis+socket:///run/x/redis.sock")
    assert not statekeys.is_unix_socket("rediss://cache.example:6380/0")


def test_a_client_on_a_socket_url_talks_to_that_socket(redis_url: str) -> None:
    client = statekeys.sync_client(redis_url)
    try:
        assert client.ping()
        assert client.connection_pool.connection_kwargs["path"] == redis_url.split("://", 1)[1]
    finally:
        client.close()
