"""A run's losses in the table's words: what was lost and what it was attributed to, from
:func:`fanout.analysis.analyse` and its loss account (nothing counted here that the analysis
does not count)."""
from __future__ import annotations

from typing import Any

import numpy as np

from fanout.analysis import analyse
from fanout.analysis.accounting import (
    UNEXPLAINED,
    fault_windows,
    missing_deliveries,
    outage_windows,
)
from fanout.formatting import count

from .common import CaseResult


def account(res: CaseResult, rec, *, expect_lossless: bool = False) -> Any:
    """Fill ``res.lost`` / ``res.attributed`` and the figures from ``rec``; add the checks every
    run must pass: nothing unexplained, received + attributed = expected per instance, no
    duplicate handed over. Returns the Findings."""
    f = analyse(rec)
    acc = f.losses
    per = f.per_instance
    counters = rec.instances.set_index("instance")
    o = f.overall
    res.figures.update({
        "run_id": rec.run_id, "status": f.status,
        "expected": int(per["expected"].sum()), "received": int(per["received"].sum()),
        "missing": int(acc.lost), "unexplained": int(acc.unexplained), "by_cause": dict(acc.by_cause),
        "not_published": int(acc.not_published), "not_published_reasons": dict(acc.not_published_reasons),
        "losses": acc.losses.to_dict(orient="records"),
        "duplicates_handed_over": int(o.get("duplicates", 0) or 0),
        "reconnects": int(counters["reconnects"].sum()), "gaps": int(counters["gaps"].sum()),
        "publish_errors": int(counters["publish_errors"].sum()),
        "outages": rec.outages.assign(t_down_s=(rec.outages["t_down"] - rec.t0) / 1e9)
                              .drop(columns=["t_down", "t_up"]).to_dict(orient="records"),
        "latency_p99_ms": f.latency.get("p99_ms"),
        "connected_at_end": bool(rec.instances["connected"].all()),
    })
    parts = [f"{count(acc.lost)} of {count(int(per['expected'].sum()))} deliveries missing"]
    if acc.not_published:
        top = next(iter(acc.not_published_reasons), "")
        parts.append(f"{count(acc.not_published)} publishes failed, publisher told ({top[:70]})")
    pubs = rec.publications
    failed_ids = set(pubs.loc[~pubs["ok"], "id"])
    anyway = int(rec.deliveries["id"].isin(failed_ids).sum()) if failed_ids else 0
    res.figures["failed_but_delivered"] = anyway
    if anyway:
        parts.append(f"{count(anyway)} deliveries of publishes that had failed (Redis ran them after the client gave up)")
    gaps = res.figures["gaps"]
    if gaps:
        # issue #17 item 2: a failed publish spends its seq, so every other receiver counts it as a gap
        others = max(0, len(rec.instances) - 1)
        spent = int(acc.not_published) * others
        res.figures["gap_reconciliation"] = {"gaps": gaps, "missing": int(acc.lost), "failed_x_receivers": spent,
                                             "reconciles": gaps == int(acc.lost) + spent}
        parts.append(f"receivers counted {count(gaps)} gaps = {count(acc.lost)} missing + {count(spent)} for failed "
                     f"publishes ({count(acc.not_published)} × {others} receivers)" if gaps == int(acc.lost) + spent
                     else f"receivers counted {count(gaps)} gaps ({count(acc.lost)} missing, {count(spent)} for "
                          f"failed publishes × receivers)")
    res.lost = "; ".join(parts)
    if acc.lost:
        named = sorted({str(x) for x in acc.losses["fault"] if str(x)})
        causes = ", ".join(f"{count(n)} {c}" for c, n in acc.by_cause.items())
        more = f"; and {len(named) - 1} more" if len(named) > 1 else ""
        res.attributed = causes + (f" ({named[0]}{more})" if named else "")
    else:
        res.attributed = "nothing to attribute"
    if acc.unexplained:
        res.figures["unexplained_sent_s"] = _unexplained_span(rec, acc)
    res.check("0 unexplained", acc.unexplained == 0, acc.unexplained)
    res.check("received + attributed = expected, every instance",
              bool((per["received"] + per["lost_attributed"] == per["expected"]).all()))
    res.check("no duplicate handed over", not o.get("duplicates"), o.get("duplicates"))
    res.check("every instance connected at the end", bool(rec.instances["connected"].all()))
    if expect_lossless:
        res.check("0 lost", acc.lost == 0, acc.lost)
    return f


def _unexplained_span(rec, acc) -> dict[str, Any]:
    """When the unexplained losses were sent (s after t0, per receiver), beside the outages the
    bridges saw: what a reader needs to see why no window held them."""
    receivers = [str(x) for x in rec.instances["instance"]]
    sent = dict(zip(rec.publications["id"], rec.publications["t_sent"]))
    windows = fault_windows(rec, receivers)
    outages = outage_windows(rec)
    out: dict[str, Any] = {}
    for r, ids in missing_deliveries(rec, receivers).items():
        mine = [(o[1], o[2]) for o in outages.get(r, ())] + [(w[3], w[4]) for w in windows if w[2] == r]
        ts = sorted(int(sent[e]) for e in ids if not any(a <= int(sent[e]) <= b for a, b in mine))
        if ts:
            out[r] = {"n": len(ts), "first_s": round((ts[0] - rec.t0) / 1e9, 3),
                      "last_s": round((ts[-1] - rec.t0) / 1e9, 3)}
    return out if out else {"note": f"{acc.by_cause.get(UNEXPLAINED, 0)} unexplained"}


def p99_ms(rec, receivers: list[str] | None = None, due_from_ns: int | None = None,
           due_to_ns: int | None = None) -> float | None:
    """p99 of (received - due) in ms over first deliveries, optionally for some receivers and for
    events due in ``[due_from_ns, due_to_ns)``."""
    d = rec.deliveries
    if receivers is not None:
        d = d[d["receiver"].isin(receivers)]
    d = d.drop_duplicates(["id", "receiver"])
    due = d["id"].map(dict(zip(rec.publications["id"], rec.publications["t_intended"])))
    keep = due.notna()
    if due_from_ns is not None:
        keep &= due >= due_from_ns
    if due_to_ns is not None:
        keep &= due < due_to_ns
    lat = (d["t_received"][keep] - due[keep]).to_numpy(dtype=float) / 1e6
    return round(float(np.percentile(lat, 99)), 3) if len(lat) else None
