"""Throwaway servers for runs, notebooks and tests: one Redis, a local Cluster, a Sentinel setup."""
from __future__ import annotations

from fanout.lab.servers.cluster import LocalCluster
from fanout.lab.servers.sentinel import LocalSentinel
from fanout.lab.servers.discovery import Candidate, candidates, chosen_server
from fanout.lab.servers.redis import RedisServer, Throwaway, find_redis_server, free_port, redis_server_version

__all__ = ["RedisServer", "LocalCluster", "LocalSentinel", "Throwaway", "find_redis_server", "free_port",
           "redis_server_version", "Candidate", "candidates", "chosen_server"]
