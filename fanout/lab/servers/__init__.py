"""Throwaway servers for runs, notebooks and tests: one Redis, a local Cluster, a Sentinel setup."""
from __future__ import annotations

from fanout.lab.servers.cluster import LocalCluster, LocalSentinel
from fanout.lab.servers.redis import RedisServer, Throwaway, find_redis_server, free_port, redis_server_version

__all__ = ["RedisServer", "LocalCluster", "LocalSentinel", "Throwaway", "find_redis_server", "free_port",
           "redis_server_version"]
