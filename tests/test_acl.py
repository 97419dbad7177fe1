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
        for u in role_users(prefix, transport):
            r.execute_command(*u.setuser(PW[u.role]))


def as_role(url: str, role: str, **kw) -> BridgeConfig:
    return BridgeConfig(url=url, username=f"fanout-{role}", password=PW[role], instance_id=f"i-{role}", **kw)


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
