"""Every error fanout raises on purpose is a :class:`FanoutError`.

The CLI turns each into one line and an exit code; library code never prints.
"""
from __future__ import annotations


class FanoutError(Exception):
    """Base of every error fanout raises on purpose."""

    exit_code = 1


class ConfigError(FanoutError, ValueError):
    """A configuration or scenario value is wrong; the message names the field."""

    exit_code = 2


class MalformedMessage(FanoutError, ValueError):
    """A message on the wire is not a fanout/seed envelope."""


class RedisUnavailable(FanoutError, ConnectionError):
    """Redis cannot be reached (or refused us); the message names the (redacted) URL."""

    exit_code = 3


class AuthenticationFailed(RedisUnavailable):
    """Redis answered but refused the credentials."""


class PublishError(FanoutError):
    """A publish did not reach Redis within its time bound.

    ``envelope`` is the envelope that was not sent (its ``seq`` was used, so receivers
    will count a gap for it).
    """

    envelope = None


class NotPublisher(FanoutError):
    """publish() on a bridge built with enable_publishing=False."""


class ServerTooOld(ConfigError):
    """The Redis (or Valkey) server is too old for what was asked (a transport, a fault);
    the message names the server, its version, what is needed and how to get it."""

    exit_code = 2


class MissingExtra(ConfigError):
    """A command needs an optional part of fanout that is not installed (``pip install 'fanout[lab]'``)."""

    exit_code = 2


class RedisServerNotFound(FanoutError):
    """No redis-server binary on PATH and no embedded one installed."""

    exit_code = 3


class RedisServerError(FanoutError):
    """A throwaway redis-server did not start or stop as asked."""

    exit_code = 3


class PartialRun(__import__("asyncio").CancelledError):
    """A run cancelled midway (by a signal); ``record`` is what it had measured, marked interrupted."""

    def __init__(self, record=None) -> None:
        super().__init__("run cancelled")
        self.record = record


class Interrupted(BaseException):
    """A run, a report or an agent stopped by SIGINT, SIGTERM or SIGHUP. Like KeyboardInterrupt it is
    no ``Exception``, so nothing on the way swallows it; context managers on the way clean up
    (throwaway servers, bridges, child processes). ``record`` is the partial run record, when one
    was saved (marked interrupted); the CLI exits with 128 + the signal's number."""

    def __init__(self, signum: int, record=None) -> None:
        import signal as _signal

        self.signum = signum
        self.record = record
        self.name = _signal.Signals(signum).name
        super().__init__(f"interrupted by {self.name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
