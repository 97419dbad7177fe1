"""Open a :class:`~fanout.transports.resp.RespProtocol`: ``redis://``, ``rediss://`` (TLS),
``unix://``; AUTH, SELECT and CLIENT SETNAME pipelined in one write, awaited with one bound.

Every failure is one line naming the address, its password redacted:
:class:`~fanout.errors.AuthenticationFailed` when Redis refuses the credentials,
:class:`~fanout.errors.RedisUnavailable` for everything else (refused, timeout, TLS, ...),
:class:`~fanout.errors.ConfigError` for a URL that is not one.
"""
from __future__ import annotations

import asyncio
import ssl as _ssl
from urllib.parse import quote

import hiredis
from redis.connection import parse_url

from fanout.errors import AuthenticationFailed, ConfigError, RedisUnavailable
from fanout.redact import redact_text, redact_url
from fanout.transports.resp import RespProtocol

_AUTH_ERRORS = ("WRONGPASS", "NOAUTH", "NOPERM", "INVALIDPASSWORD")


def sanitize_client_name(name) -> str:
    """A name Redis accepts for CLIENT SETNAME: every character outside printable ASCII
    (``!``..``~``; so spaces, control characters, non-ASCII) becomes ``_``."""
    return "".join(c if "!" <= c <= "~" else "_" for c in str(name))


def _truthy(v) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("1", "true", "yes", "on", "y")


def ssl_context(params: dict) -> _ssl.SSLContext:
    """An SSLContext from redis-py style ``ssl_*`` URL query parameters: ``ssl_ca_certs``,
    ``ssl_certfile``/``ssl_keyfile`` (client certificate), ``ssl_cert_reqs`` (none, optional,
    required: the default) and ``ssl_check_hostname`` (default: on when verifying)."""
    ctx = _ssl.create_default_context(cafile=params.get("ssl_ca_certs"))
    reqs = str(params.get("ssl_cert_reqs", "required")).lower()
    if reqs in ("none", "cert_none"):
        ctx.check_hostname = False
        ctx.verify_mode = _ssl.CERT_NONE
    else:
        if reqs in ("optional", "cert_optional"):
            ctx.verify_mode = _ssl.CERT_OPTIONAL
        if "ssl_check_hostname" in params:
            ctx.check_hostname = _truthy(params["ssl_check_hostname"])
    if params.get("ssl_certfile"):
        ctx.load_cert_chain(params["ssl_certfile"], params.get("ssl_keyfile"))
    return ctx


def connection_params(url_or_params) -> dict:
    """``{"host", "port", "path", "db", "username", "password", "ssl", "safe"}`` from a URL
    or a dict of those keys (``ssl``: True, an SSLContext, or None; ``safe``: the redacted address)."""
    if isinstance(url_or_params, str):
        try:
            p = parse_url(url_or_params)
        except ValueError as exc:
            raise ConfigError(f"not a Redis URL: {redact_url(url_or_params)} ({exc})") from None
        p["ssl"] = url_or_params.startswith("rediss://") or None
        p["safe"] = redact_url(url_or_params)
    else:
        p = dict(url_or_params)
        where = f"unix://{p['path']}" if p.get("path") else \
            f"{'rediss' if p.get('ssl') else 'redis'}://{p.get('host') or 'localhost'}:{p.get('port') or 6379}"
        auth = f"{quote(p['username'] or '')}:***@" if p.get("password") else ""
        p.setdefault("safe", where.replace("://", f"://{auth}", 1) + (f"/{p['db']}" if p.get("db") else ""))
    p.setdefault("host", "localhost")
    p.setdefault("port", 6379)
    p["db"] = int(p.get("db") or 0)
    if p.get("ssl") is True:
        try:
            p["ssl"] = ssl_context(p)
        except (OSError, ValueError) as exc:  # a CA file that is not there or not PEM
            raise ConfigError(f"TLS settings for {p['safe']}: {_one_line(exc)}") from None
    return p


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact_text(text.splitlines()[0]) if text else exc.__class__.__name__


async def open_connection(url_or_params, *, connect_timeout_s: float, command_timeout_s: float,
                          client_name: str | None = None, window: int = 1000, on_reply=None,
                          on_message=None, on_unsubscribed=None, on_lost=None,
                          health_interval_s: float | None = None, health_timeout_s: float | None = None,
                          username: str | None = None, password: str | None = None,
                          ssl: _ssl.SSLContext | None = None) -> RespProtocol:
    """Connect (within ``connect_timeout_s``), then AUTH / SELECT / CLIENT SETNAME / PING in one
    write, all answered within ``command_timeout_s`` (also the connection's reply deadline).
    ``username``/``password``/``ssl`` given here win over the URL's. See :class:`RespProtocol`
    for the callbacks, ``window`` and the health check."""
    p = connection_params(url_or_params)
    safe = p["safe"]
    user = username if username is not None else p.get("username")
    pw = password if password is not None else p.get("password")
    ctx = ssl if ssl is not None else p.get("ssl")
    proto = RespProtocol(reply_timeout_s=command_timeout_s, window=window, on_reply=on_reply,
                         on_message=on_message, on_unsubscribed=on_unsubscribed, on_lost=on_lost,
                         health_interval_s=health_interval_s, health_timeout_s=health_timeout_s, name=safe)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout_s):
            if p.get("path"):
                await loop.create_unix_connection(lambda: proto, p["path"], ssl=ctx,
                                                  server_hostname="localhost" if ctx else None)
            else:
                await loop.create_connection(lambda: proto, p["host"], p["port"], ssl=ctx)
    except TimeoutError:
        proto.abort()
        raise RedisUnavailable(f"cannot reach Redis at {safe}: not connected within {connect_timeout_s:g}s") from None
    except OSError as exc:  # refused, unreachable, DNS, TLS handshake (ssl.SSLError)
        proto.abort()
        raise RedisUnavailable(f"cannot reach Redis at {safe}: {_one_line(exc)}") from None
    except BaseException:  # cancelled: leave no connection behind
        proto.abort()
        raise
    futs = []
    try:
        # (a server refusing the connection, e.g. at maxclients, may have said so already: then
        # the first call raises the ConnectionError that says why)
        if pw:
            futs.append(proto.call(b"AUTH", user, pw) if user else proto.call(b"AUTH", pw))
        if p["db"]:
            futs.append(proto.call(b"SELECT", p["db"]))
        if client_name is not None:
            futs.append(proto.call(b"CLIENT", b"SETNAME", sanitize_client_name(client_name)))
        futs.append(proto.call(b"PING"))
        async with asyncio.timeout(command_timeout_s):
            replies = await asyncio.gather(*futs, return_exceptions=True)
    except TimeoutError:
        replies = [ConnectionError(f"no reply within {command_timeout_s:g}s")]
    except ConnectionError as exc:
        replies = [exc]
    except BaseException:
        proto.abort()
        raise
    err = next((r for r in replies if isinstance(r, BaseException)), None)
    if err is None:
        return proto
    proto.abort()
    msg = _one_line(err)
    if isinstance(err, hiredis.ReplyError) and (
            msg.startswith(_AUTH_ERRORS) or "without any password configured" in msg):
        raise AuthenticationFailed(f"Redis at {safe} refused the credentials: {msg}")
    if isinstance(err, ConnectionError) and msg.startswith("no reply within"):
        msg = f"no answer within {command_timeout_s:g}s"
    elif msg.startswith(f"{safe} "):  # "<address> refused the connection: ERR max number of clients reached"
        msg = msg[len(safe) + 1:]
    raise RedisUnavailable(f"cannot reach Redis at {safe}: {msg}")
