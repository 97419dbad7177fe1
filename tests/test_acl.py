"""Least-privilege ACL users per role (fanout acl): the host may only publish, bots may only
subscribe, on the fleet's prefix; the bridge works under them and says what is not allowed."""
from __future__ import annotations

import os
import subprocess

import pytest
import redis

from conftest import ROOT, arun, fanout_cmd, wait_for
from fanout import BridgeConfig, PublishError, RedisEventBridge
from fanout.acl import role_users
from fanout.errors import AuthenticationFailed, RedisUnavailable

PW = {"host": "host-secret", "bot": "bot-secret"}


def apply(url: str, prefix: str, transport: str) -> None:
    with redis.Redis.from_url(url) as r:
        for u in role_users(prefix, transport, instances=("i-bot",)):
            r.execute_command(*u.setuser(PW[u.role]))


def as_role(url: str, role: str, **kw) -> BridgeConfig:
    user = f"fanout-{role}-i-{role}" if kw.get("transport") == "streams" and role != "host" else f"fanout-{role}"
    return BridgeConfig(url=url, username=user, password=PW[role], instance_id=f"i-{role}", **kw)


@pytest.mark.parametrize("transport", ["pubsub", "streams"])
def test_the_host_publishes_and_the_bots_receive_under_their_users(redis_server, transport):
    apply(redis_server.url, "ws:", transport)

    async def go():
        async with RedisEventBridge(as_role(redis_server.url, "host", enable_subscription=False,
                                            transport=transport)) as host, \
                RedisEventBridge(as_role(redis_server.url, "bot", enable_publishing=False,
                                         transport=transport)) as bot:
            got = []
            bot.on("trade", got.append)
            for k in range(10):
                await host.publish("trade", {"k": k})
            await wait_for(lambda: len(got) == 10, what="10 trades at the bot")
            assert [e.data["k"] for e in got] == list(range(10))

    arun(go())


def test_a_bot_cannot_publish_and_the_host_cannot_subscribe(redis_server):
    apply(redis_server.url, "ws:", "pubsub")

    async def go():
        async with RedisEventBridge(as_role(redis_server.url, "bot", enable_publishing=True,
                                            enable_subscription=False)) as bot:
            with pytest.raises(PublishError, match="(?i)no permissions to run the 'publish' command") as ei:
                await bot.publish("trade", {})
            # Redis answered with an error reply: surely not published
            assert ei.value.refused and not ei.value.maybe_sent
            assert str(ei.value).endswith("(refused by Redis: not published)"), str(ei.value)
        with pytest.raises((AuthenticationFailed, RedisUnavailable), match="subscribe"):
            await RedisEventBridge(as_role(redis_server.url, "host", enable_publishing=False)).start()
        off_prefix = RedisEventBridge(as_role(redis_server.url, "host", enable_subscription=False,
                                              key_prefix="other:"))
        await off_prefix.start()
        try:
            with pytest.raises(PublishError, match="(?i)no permissions to access (a|one of the) channel"):
                await off_prefix.publish("trade", {})
        finally:
            await off_prefix.close()

    arun(go())


def test_fanout_acl_prints_placeholders_and_applies_with_passwords_from_the_environment(redis_server):
    printed = subprocess.run([*fanout_cmd(), "acl", "--prefix", "bots:"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.strip().splitlines()
    assert len(lines) == 2 and all(ln.startswith("ACL SETUSER fanout-") for ln in lines)
    assert "><host-password>" in lines[0] and "&bots:*" in lines[0] and "+publish" in lines[0]
    assert "+subscribe" in lines[1] and "+publish" not in lines[1]

    env = {**os.environ, "FANOUT_HOST_PASSWORD": PW["host"]}
    env.pop("FANOUT_BOT_PASSWORD", None)
    missing = subprocess.run([*fanout_cmd(), "acl", "--apply", "--redis-url", redis_server.url], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "set FANOUT_BOT_PASSWORD" in missing.stderr
    env["FANOUT_BOT_PASSWORD"] = PW["bot"]
    done = subprocess.run([*fanout_cmd(), "acl", "--apply", "--redis-url", redis_server.url], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert PW["host"] not in done.stdout + done.stderr and PW["bot"] not in done.stdout + done.stderr
    with redis.Redis.from_url(redis_server.url) as r:
        assert {"fanout-host", "fanout-bot"} <= set(r.acl_users())
        with redis.Redis(host=redis_server.host, port=redis_server.port, username="fanout-bot",
                         password=PW["bot"]) as bot:
            with pytest.raises(redis.exceptions.NoPermissionError):
                bot.publish("ws:trade", "x")


# -- issue 23: least privilege without holes --------------------------------------------------------------

from conftest import needs_redis7  # noqa: E402
from fanout.acl import role_user  # noqa: E402
from fanout.errors import ConfigError  # noqa: E402


@needs_redis7
def test_a_streams_bot_can_write_only_its_own_read_position(redis_server):
    """Issue 23: a Streams bot's user had ~ws:* +hset, so one bot could rewrite another bot's read
    position. Each bot now gets its own user, writing only {prefix}pos:{its id}."""
    with redis.Redis.from_url(redis_server.url) as admin:
        for u in (role_user("ws:", "streams", "host"), role_user("ws:", "streams", "bot", instance_id="bot-a"),
                  role_user("ws:", "streams", "bot", instance_id="bot-b")):
            admin.execute_command(*u.setuser(f"{u.name}-pw"))

    def cfg(iid, **kw):
        user = "fanout-host" if iid == "host" else f"fanout-bot-{iid}"
        return BridgeConfig(url=redis_server.url, username=user, password=f"{user}-pw", instance_id=iid,
                            transport="streams", **kw)

    async def go():
        async with RedisEventBridge(cfg("host", enable_subscription=False)) as host, \
                RedisEventBridge(cfg("bot-a", enable_publishing=False)) as a, \
                RedisEventBridge(cfg("bot-b", enable_publishing=False)) as b:
            got_a, got_b = [], []
            a.on("trade", got_a.append)
            b.on("trade", got_b.append)
            for k in range(5):
                await host.publish("trade", {"k": k})
            await wait_for(lambda: len(got_a) == len(got_b) == 5, what="5 trades at each bot")
        for m in (a.metrics(), b.metrics()):
            assert m["position_save_errors"] == 0   # each saved its own position

    arun(go())
    with redis.Redis(host=redis_server.host, port=redis_server.port, username="fanout-bot-bot-a",
                     password="fanout-bot-bot-a-pw") as a:
        a.hset("ws:pos:bot-a", "ws:trade", "0-1")                     # its own: allowed
        a.hgetall("ws:pos:bot-a")
        with pytest.raises(redis.exceptions.NoPermissionError):
            a.hset("ws:pos:bot-b", "ws:trade", "9999999999999-0")     # another bot's read position
        with pytest.raises(redis.exceptions.NoPermissionError):
            a.xadd("ws:trade", {"d": b"{}"})                           # a bot does not publish
        with pytest.raises(redis.exceptions.NoPermissionError):
            a.hset("ws:trade-not-a-position", "x", "y")
    with redis.Redis(host=redis_server.host, port=redis_server.port, username="fanout-host",
                     password="fanout-host-pw") as h:
        with pytest.raises(redis.exceptions.NoPermissionError):
            h.xadd("ws:pos:bot-a", {"d": b"{}"})                       # the host writes only the event streams
        with pytest.raises(redis.exceptions.NoPermissionError):
            h.hset("ws:pos:bot-a", "ws:trade", "0-0")


def test_acl_users_per_role_and_transport_say_their_mistakes_in_one_line():
    with pytest.raises(ConfigError, match="streams bot writes its read position under 'ws:pos:<instance id>'"):
        role_user("ws:", "streams", "bot")
    with pytest.raises(ConfigError, match="key_prefix: 'ws' must end with a separator"):
        role_user("ws", "pubsub", "host")
    u = role_user("ws:", "streams", "peer", instance_id="p*1")
    assert "~ws:pos:p\\*1" in u.rules and "%R~ws:ticker" not in u.rules and "~ws:ticker" in u.rules
    bot = role_user("ws:", "streams", "bot", instance_id="b1", event_types=("trade",))
    assert bot.name == "fanout-bot-b1" and [r for r in bot.rules if "~" in r] == ["%R~ws:trade", "~ws:pos:b1"]
    for t in ("pubsub", "sharded"):  # channels, never keys
        for role in ("host", "bot", "peer"):
            rules = role_user("ws:", t, role).rules
            assert "resetkeys" in rules and "&ws:*" in rules and not any(r.startswith(("~", "%")) for r in rules)


def test_the_sharded_host_publishes_and_bots_receive_under_their_users_on_every_node():
    from fanout.lab.servers import LocalCluster

    with LocalCluster(masters=3) as cl:
        for node in cl.nodes:
            with redis.Redis.from_url(node.url) as admin:   # ACLs are per node: every node gets the users
                for u in (role_user("ws:", "sharded", "host"), role_user("ws:", "sharded", "bot")):
                    admin.execute_command(*u.setuser(PW[u.role]))
        opts = cl.bridge_options()

        def cfg(role, **kw):
            return BridgeConfig(url=cl.url, username=f"fanout-{role}", password=PW[role],
                                transport="sharded", **{"instance_id": f"i-{role}", **opts, **kw})

        async def go():
            async with RedisEventBridge(cfg("host", enable_subscription=False)) as host, \
                    RedisEventBridge(cfg("bot", enable_publishing=False)) as bot:
                got = []
                bot.on("*", got.append)
                for k in range(12):
                    await host.publish("trade", {"k": k, "symbol": f"S{k}"})
                await wait_for(lambda: len(got) == 12, what="12 trades at the bot")
            async with RedisEventBridge(cfg("bot", enable_subscription=False, instance_id="i-bot2")) as bot_pub:
                with pytest.raises(PublishError, match="(?i)no permissions"):
                    await bot_pub.publish("trade", {"symbol": "S1"})
            with pytest.raises((AuthenticationFailed, RedisUnavailable), match="(?i)ssubscribe|permission"):
                await RedisEventBridge(cfg("host", enable_publishing=False, instance_id="i-host2")).start()

        arun(go(), 60)


def test_fanout_acl_prints_one_streams_bot_user_per_instance():
    printed = subprocess.run([*fanout_cmd(), "acl", "--transport", "streams", "--instance", "b1", "--instance", "b2"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.strip().splitlines()
    assert [ln.split()[2] for ln in lines] == ["fanout-host", "fanout-bot-b1", "fanout-bot-b2"]
    assert "~ws:pos:b1" in lines[1] and "~ws:pos:b2" not in lines[1] and "%R~ws:ticker" in lines[1]
    missing = subprocess.run([*fanout_cmd(), "acl", "--transport", "streams"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "--instance" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
