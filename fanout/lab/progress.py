"""A progress bar over a run's schedule (tqdm), silent when off or not on a terminal."""
from __future__ import annotations

import sys


class Progress:
    def __init__(self, enabled: bool | None, total_s: float, desc: str) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=round(total_s, 1), unit="s", desc=desc, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f}s {postfix}")

    def update(self, elapsed_s: float, published: int, delivered: int) -> None:
        if self.bar is not None:
            self.bar.n = min(round(elapsed_s, 1), self.bar.total)
            self.bar.set_postfix_str(f"published {published}, delivered {delivered}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
