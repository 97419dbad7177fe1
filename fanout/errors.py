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


#: how a PublishError's message ends, by what is known of the publish
OUTCOME_UNKNOWN = "outcome unknown: Redis may have accepted it"
NOT_SENT = "not sent"
REFUSED = "refused by Redis: not published"


class PublishError(FanoutError):
    """A publish failed within its time bound (the caller is told; the bridge counts it).

    ``maybe_sent`` says what is known of it, and the message ends with it:

    * True, "(outcome unknown: Redis may have accepted it)": the command was written to the
      connection, then no answer came within ``publish_timeout_s`` or the connection died.
      Redis may have run it: receivers may get the event.
    * False, "(not sent)": it surely never reached Redis (never written: the publishing side was
      down, the connection ended first, no room in time, a bad argument); or, with ``refused``
      and "(refused by Redis: not published)", Redis answered with an error reply (NOPERM, OOM
      ...). Either way no receiver gets it.

    ``reason`` is the message without that ending. ``envelope`` is the envelope (from
    ``publish()``); its ``seq`` was used and is announced to receivers as void (unsent).
    """

    envelope = None
    envelope_id = None

    def __init__(self, reason: str = "publish failed", *, maybe_sent: bool = False, refused: bool = False) -> None:
        self.reason = reason
        self.refused = bool(refused)
        self.maybe_sent = bool(maybe_sent) and not self.refused
        super().__init__(f"{reason} ({OUTCOME_UNKNOWN if self.maybe_sent else REFUSED if self.refused else NOT_SENT})")

    def __reduce__(self):  # pickled or copied with what is known of it, not as a bare message
        return _publish_error, (type(self), self.reason, self.maybe_sent, self.refused), self.__dict__


def _publish_error(cls, reason: str, maybe_sent: bool, refused: bool) -> PublishError:
    return cls(reason, maybe_sent=maybe_sent, refused=refused)


class Backpressure(PublishError):
    """``publish_nowait(..., strict=True)`` while the in-flight window is full: nothing was sent and
    no seq used (``maybe_sent`` False); ``await bridge.writable()``, then publish it again."""


class NotPublisher(FanoutError):
    """publish() on a bridge built with enable_publishing=False."""


class NotSubscriber(FanoutError):
    """on()/on_gap()/events() on a bridge built with enable_subscription=False (its handlers would never run)."""


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

    def _render_traceback_(self) -> list[str]:
        """What IPython (a notebook cell) shows instead of a traceback: this one line."""
        return [f"{type(self).__name__}: {self}"]
