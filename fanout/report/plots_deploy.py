"""The deployment diagram of the recommendation: one publish-only WebSocket host, Redis, N
subscribe-only bot instances, boxes and arrows annotated with what was measured (the rate, the
bot instances, Redis CPU at that load) and the recommended transport — all read from
``facts["recommendation"]`` (report.json)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

TRANSPORT_WORDS = {"pubsub": "pub/sub", "streams": "Streams", "sharded": "sharded pub/sub"}
#: the boxes' colours: host, Redis, bots
COLOURS = {"host": "#30638e", "redis": "#d1495b", "bot": "#00798c"}


def _box(ax, x: float, y: float, w: float, h: float, colour: str, title: str, lines: list[str]) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01,rounding_size=0.02",
                                facecolor=colour, edgecolor=colour, alpha=0.12, linewidth=1.5))
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01,rounding_size=0.02",
                                facecolor="none", edgecolor=colour, linewidth=1.5))
    ax.text(x + w / 2, y + h - 0.045, title, ha="center", va="top", fontsize=9, fontweight="bold", color=colour)
    if lines:
        ax.text(x + w / 2, y + h - 0.13, "\n".join(lines), ha="center", va="top", fontsize=7.5, color="0.2",
                linespacing=1.35)


def _arrow(ax, a: tuple[float, float], b: tuple[float, float], label: str = "", dy: float = 0.03) -> None:
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, linewidth=1.3, color="0.35"))
    if label:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + dy, label, ha="center", va="bottom", fontsize=7.5,
                color="0.25")


def plot_deployment(R: Mapping[str, Any]) -> Figure:
    """``R``: ``facts["recommendation"]``. Always a figure: without a recommended transport the
    Redis box says none was chosen (and why, as the decision)."""
    d = R.get("deployment") or {}
    transport = d.get("transport")
    tr = TRANSPORT_WORDS.get(transport, transport) if transport else "transport not decided"
    bots = int(d.get("bots") or 0)
    rate = d.get("rate_per_s")
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    verb = "XADD" if transport == "streams" else "PUBLISH" if transport else "publish"
    _box(ax, 0.01, 0.33, 0.24, 0.36, COLOURS["host"], "WebSocket host",
         ["exchange connections", "bridge: publish only", "instance_id websocket-host"])
    measured = TRANSPORT_WORDS.get(d.get("measured_transport"), d.get("measured_transport") or "")
    redis_lines = [f"recommended: {tr}" if transport else tr]
    if d.get("server"):
        redis_lines.append(f"measured on {d['server']}")
    if d.get("redis_cpu_pct") is not None and d.get("deliveries_per_s"):
        redis_lines.append(f"CPU {d['redis_cpu_pct']:.1f} % of a core at")
        redis_lines.append(f"{d['deliveries_per_s']:,.0f} deliveries/s ({measured})")
    policy = (R.get("redis") or {}).get("maxmemory_policy")
    if policy:
        redis_lines.append(f"maxmemory-policy {policy}")
    _box(ax, 0.39, 0.28, 0.22, 0.46, COLOURS["redis"], "Redis", redis_lines)
    _arrow(ax, (0.255, 0.51), (0.385, 0.51), f"{rate:,.0f} events/s" if rate else "")
    ax.text(0.32, 0.48, verb, ha="center", va="top", fontsize=7.5, color="0.25")
    # bots: first, second, ..., last (N measured)
    shown = ["bot 1", "bot 2", f"bot {bots}"] if bots > 3 else [f"bot {k + 1}" for k in range(max(bots, 1))]
    ys = [0.78, 0.45, 0.06] if len(shown) == 3 else [0.62, 0.22] if len(shown) == 2 else [0.40]
    sub = "XREAD" if transport == "streams" else "SUBSCRIBE" if transport else "subscribe"
    for k, (name, y) in enumerate(zip(shown, ys)):
        _box(ax, 0.75, y, 0.22, 0.17, COLOURS["bot"], name, ["bridge: subscribe only"])
        _arrow(ax, (0.615, 0.51), (0.745, y + 0.085), sub if k == len(shown) // 2 else "", dy=0.02)
    if bots > 3:
        ax.text(0.86, 0.335, "⋮", ha="center", va="center", fontsize=14, color="0.4")
    what = f"{bots} bot instance{'s' if bots != 1 else ''}" if bots else "bot instances (none measured)"
    fig.suptitle(f"Recommended deployment: {tr}\nmeasured with 1 host and {what}"
                 + (f" at {rate:,.0f} events/s on {measured} ({d['run']})" if rate and d.get("run") else ""),
                 fontsize=9.5)
    return fig


__all__ = ["plot_deployment"]
