"""A small synthetic market: realistic ticker, trade, order book and candle payloads.

Prices random-walk per symbol; trades get increasing ids; order books carry the
exchange's update id (snapshot first, then diffs); candles have an interval and an open time.
Everything is drawn from one seeded generator, so a run is reproducible.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from fanout.events import CANDLE, ORDERBOOK, TICKER, TRADE

DEFAULT_SYMBOLS: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
_START_PRICE = {"BTC/USDT": 67000.0, "ETH/USDT": 3400.0, "SOL/USDT": 150.0}


@dataclass
class _Book:
    update_id: int = 0
    snapshot_sent: bool = False


@dataclass
class SyntheticMarket:
    """Payload factory. ``make(type, symbol, now_ms)`` returns a JSON-able dict."""

    rng: random.Random
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    exchange: str = "binance"
    book_depth: int = 5  # levels per side in an order book snapshot; diffs carry a quarter of that
    _price: dict[str, float] = field(default_factory=dict)
    _trade_id: int = 1_000_000
    _books: dict[str, _Book] = field(default_factory=dict)

    def _step(self, symbol: str) -> float:
        p = self._price.get(symbol) or _START_PRICE.get(symbol, 100.0)
        p *= 1.0 + self.rng.gauss(0.0, 0.0005)
        self._price[symbol] = p
        return p

    def make(self, event_type: str, symbol: str, now_ms: int) -> dict:
        price = self._step(symbol)
        if event_type == TICKER:
            spread = price * 0.0001
            return {
                "symbol": symbol, "exchange": self.exchange,
                "bid": round(price - spread / 2, 2), "ask": round(price + spread / 2, 2),
                "last": round(price, 2), "volume24h": round(self.rng.uniform(1e3, 5e4), 3),
                "timestamp": now_ms,
            }
        if event_type == TRADE:
            self._trade_id += 1
            return {
                "symbol": symbol, "exchange": self.exchange, "tradeId": str(self._trade_id),
                "price": round(price, 2), "amount": round(self.rng.expovariate(2.0), 6),
                "side": self.rng.choice(("buy", "sell")), "timestamp": now_ms,
            }
        if event_type == ORDERBOOK:
            book = self._books.setdefault(symbol, _Book())
            book.update_id += self.rng.randint(1, 5)
            depth = self.book_depth if not book.snapshot_sent else max(2, self.book_depth // 4)
            kind = "snapshot" if not book.snapshot_sent else "diff"
            book.snapshot_sent = True
            tick = max(price * 0.0001, 0.01)
            bids = [[round(price - tick * (i + 1), 2), round(self.rng.uniform(0.01, 3), 4)] for i in range(depth)]
            asks = [[round(price + tick * (i + 1), 2), round(self.rng.uniform(0.01, 3), 4)] for i in range(depth)]
            return {
                "symbol": symbol, "exchange": self.exchange, "kind": kind,
                "updateId": book.update_id, "bids": bids, "asks": asks, "timestamp": now_ms,
            }
        if event_type == CANDLE:
            o = price * (1 + self.rng.gauss(0, 0.001))
            c = price
            hi = max(o, c) * (1 + abs(self.rng.gauss(0, 0.0005)))
            lo = min(o, c) * (1 - abs(self.rng.gauss(0, 0.0005)))
            return {
                "symbol": symbol, "exchange": self.exchange, "interval": "1m",
                "openTime": now_ms - now_ms % 60_000,
                "open": round(o, 2), "high": round(hi, 2), "low": round(lo, 2), "close": round(c, 2),
                "volume": round(self.rng.uniform(1, 500), 3), "closed": False,
            }
        raise ValueError(f"unknown event type {event_type!r}")
