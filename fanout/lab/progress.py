"""Progress over a run's schedule: a bar (tqdm) on a terminal, a plain line every
:data:`LINE_EVERY_S` otherwise for a run of :data:`LONG_RUN_S` or more, silent when off.

Beside the time it shows what a long run is judged on, as it goes: deliveries/s over the last
10 s, the p99 latency of the last closed 10 s interval (the summary's time series), events
found missing so far (the bridges' ``gaps``: seqs skipped on their streams) and the resident
memory of the process(es) recording."""
from __future__ import annotations

import sys
import time

#: a run this long (s) gets progress lines even when stderr is not a terminal
LONG_RUN_S = 60.0
#: ... one every this many seconds
LINE_EVERY_S = 30.0
#: deliveries/s is measured over this many seconds
RATE_WINDOW_S = 10.0


def live_text(live: dict | None, rate: float | None) -> str:
    """``published …, delivered … (… /s), p99 … ms, missing …, RSS … MB`` from what is known."""
    live = live or {}
    parts = [f"published {live.get('published', 0):,}", f"delivered {live.get('delivered', 0):,}"
             + (f" ({rate:,.0f}/s)" if rate is not None else "")]
    if live.get("p99_ms") is not None:
        parts.append(f"p99 {live['p99_ms']:.3f} ms (last 10 s)")
    if "missing" in live:
        parts.append(f"missing {live['missing']:,}")
    if live.get("rss_mb") is not None:
        parts.append(f"RSS {live['rss_mb']:,.0f} MB")
    return ", ".join(parts)


def in_kernel() -> bool:
    """True inside a Jupyter kernel (its ``sys.stderr`` is ipykernel's stream): there stderr shows
    as a pink box, so progress lines go to stdout and the bar is tqdm's widget."""
    return type(sys.stderr).__module__.startswith("ipykernel")


class Progress:
    def __init__(self, enabled: bool | None, total_s: float, desc: str, *, stream=None) -> None:
        kernel = stream is None and in_kernel()
        self.stream = stream or (sys.stdout if kernel else sys.stderr)
        tty = self.stream.isatty()
        self.lines = enabled is None and not tty and total_s >= LONG_RUN_S
        if enabled is None:
            enabled = tty
        self.bar = None
        self.total_s = total_s
        self.desc = desc
        self._last = (time.monotonic(), 0)
        self._rate: float | None = None
        self._next_line = LINE_EVERY_S
        if enabled:
            from tqdm.auto import tqdm

            # in a kernel tqdm.auto draws a widget (ipywidgets, the report extra) when given stderr, nothing
            # written to it; given stdout it would print text
            self.bar = tqdm(total=round(total_s, 1), unit="s", desc=desc, leave=False,
                            file=sys.stderr if kernel else self.stream,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f}s {postfix}")

    def update(self, elapsed_s: float, published: int, delivered: int, live: dict | None = None) -> None:
        if self.bar is None and not self.lines:
            return
        live = {"published": published, "delivered": delivered, **(live or {})}
        now = time.monotonic()
        t, n = self._last
        if now - t >= RATE_WINDOW_S:  # the rate over a window (workers report once a second each)
            self._rate = (live["delivered"] - n) / (now - t)
            self._last = (now, live["delivered"])
        text = live_text(live, self._rate)
        if self.bar is not None:
            self.bar.n = min(round(elapsed_s, 1), self.bar.total)
            self.bar.set_postfix_str(text, refresh=True)
        elif elapsed_s >= self._next_line:
            self._next_line = elapsed_s + LINE_EVERY_S
            print(f"{self.desc}: {elapsed_s:,.0f}/{self.total_s:,.0f} s, {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
