"""A process hosting one streams bridge, for tests/test_streams.py (killed with SIGKILL there).

    python tests/streams_child.py REDIS_URL INSTANCE_ID OUT_FILE

Appends the id of every envelope it receives to OUT_FILE, one per line (one write() each,
so a SIGKILL loses nothing already handed over), and creates OUT_FILE.ready once subscribed.
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from fanout import BridgeConfig, RedisEventBridge


async def main(url: str, instance_id: str, out: str) -> None:
    f = open(out, "a", buffering=1)
    cfg = BridgeConfig(url=url, instance_id=instance_id, transport="streams", event_types=("ticker",),
                       enable_publishing=False)
    bridge = RedisEventBridge(cfg)
    bridge.on("ticker", lambda env: f.write(f"{env.id}\n"))
    await bridge.start()
    Path(out + ".ready").write_text(bridge.epoch)
    while True:
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
