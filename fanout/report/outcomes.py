"""What each run showed, as data the templates turn into sentences: did every event arrive
exactly once, or what was lost and why; was the load point within capacity; what needs attention.

Nothing here writes a sentence. The one rule the wording must keep is computed here: a run may
be called *exactly once* only when it passed and nothing was missing, duplicated, self-received
or unknown; the conclusion may say every event arrived only when every run is exactly once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from fanout.analysis.accounting import OUTAGE, OUTPUT_BUFFER, UNEXPLAINED
from fanout.report import saturation
from fanout.report.saturation import Load

#: the kinds of loss (``LossAccount.by_kind``): where a planned fault acted (on the instance it
#: targets, within its window), during an outage no fault planned, or with nothing to explain it
PLANNED, UNPLANNED, UNEXPLAINED_KIND = "planned fault", "unplanned outage", "unexplained"
LOSS_KINDS = (PLANNED, UNPLANNED, UNEXPLAINED_KIND)


def loss_kinds(acc) -> dict[str, int]:
    """Lost deliveries per kind, every kind present (0 when none): ``LossAccount.by_kind`` when
    the analysis says it; from the causes otherwise (archives analysed before it did)."""
    out = dict.fromkeys(LOSS_KINDS, 0)
    if acc is None:
        return out
    by_kind = getattr(acc, "by_kind", None)
    if by_kind is not None:
        for kind, n in by_kind.items():
            out[str(kind)] = out.get(str(kind), 0) + int(n)
        return out
    for cause, n in acc.by_cause.items():
        if cause == UNEXPLAINED:
            kind = UNEXPLAINED_KIND
        elif cause == OUTPUT_BUFFER or cause.startswith("lost during ") and cause != OUTAGE:
            kind = PLANNED
        elif cause == OUTAGE:
            kind = UNPLANNED
        else:  # trimmed, held at the end, an agent died: no planned fault acted there
            kind = UNPLANNED
        out[kind] += int(n)
    return out


def judged(criterion) -> bool:
    """A criterion that decides PASS/FAIL; ``judged=False`` ones (lateness) are stated, not judged."""
    return bool(getattr(criterion, "judged", True))


@dataclass(frozen=True)
class Outcome:
    run_id: str
    name: str
    role: str
    transport: str
    fault: str | None
    fault_kinds: tuple[str, ...]
    passed: bool
    expected: int
    delivered: int
    missing: int
    unexplained: int
    not_published: int
    failed_delivered_events: int   # failed publishes that reached Redis anyway and were delivered
    failed_delivered: int          # their deliveries (one per receiver that got one)
    duplicates: int
    self_received: int
    unknown: int
    causes: tuple[tuple[str, int], ...]
    gaps: int
    unsent: int
    gaps_from_failed_publishes: int
    suspicious: int
    rejected: int
    id_conflicts: int
    foreign: int
    load: Load
    exactly_once: bool
    failed_criteria: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)
    #: lost deliveries per kind (LOSS_KINDS order): planned fault, unplanned outage, unexplained
    kinds: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    #: criteria stated, not judged (lateness): (name, measured, threshold)
    noted: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)

    @property
    def planned(self) -> int:
        return dict(self.kinds).get(PLANNED, 0)

    @property
    def unplanned(self) -> int:
        return dict(self.kinds).get(UNPLANNED, 0)

    @property
    def all_planned(self) -> bool:
        """Every lost delivery was lost where a planned fault acted (nothing else lost)."""
        return self.planned == self.missing

    @property
    def lost_pct(self) -> float:
        return 100.0 * self.missing / self.expected if self.expected else 0.0

    @property
    def gaps_other(self) -> int:
        """Transit gaps no missing delivery accounts for (should be 0): the receivers' ``gaps`` count
        events lost after Redis accepted them, so each is a missing delivery too, unless a failed
        publish's number was not announced in time (``gaps_from_failed_publishes`` bounds those)."""
        return max(0, self.gaps - self.missing - self.gaps_unannounced)

    @property
    def gaps_unannounced(self) -> int:
        """Gaps that are failed publishes' numbers the receivers did not hear announced (in time)."""
        return min(max(0, self.gaps - self.missing), max(0, self.gaps_from_failed_publishes - self.unsent))


def gaps_from_failed_publishes(run) -> int:
    """Sequence numbers failed publishes used up, times the receivers that could have seen the jump.

    A publish that fails inside the bridge has taken its ``seq`` (the publisher was told, nobody
    expects the event); the publisher announces it as ``void`` in its next envelopes, so receivers
    count it ``unsent``, not as a gap (docs/wire-format.md). Events never handed to a bridge (its
    instance was down) took no number (``seq`` -1 in the record)."""
    rec = run.record
    by_source: dict[str, int] = {}
    if rec.summary is not None and not rec.rows_loaded:  # from the summary's bitmaps: no row read
        for (src, _, _), seqs in rec.summary.failed.items():
            by_source[src] = by_source.get(src, 0) + len(seqs)
    else:
        pubs = rec.publications
        by_source = {str(k): int(v) for k, v in pubs.loc[(~pubs["ok"]) & (pubs["seq"] >= 0), "source"]
                     .value_counts().items()}
    if not any(by_source.values()):
        return 0
    receivers = set(run.findings.per_instance.loc[run.findings.per_instance["expected"] > 0, "instance"])
    return int(sum(n * len(receivers - {src}) for src, n in by_source.items()))


def outcome(run) -> Outcome:
    f, o = run.findings, run.findings.overall
    acc = f.losses
    kinds = tuple(dict.fromkeys(str(k) for k in run.record.faults["kind"])) if len(run.record.faults) else ()
    load = saturation.assess(run)
    exact = (f.passed and o["missing"] == 0 and o["duplicates"] == 0 and o["self_received"] == 0
             and o["unknown"] == 0 and o["expected"] > 0)
    return Outcome(
        run_id=run.record.run_id, name=run.name, role=run.role, transport=run.transport,
        fault=run.fault if run.role == "fault" or run.faulted else None, fault_kinds=kinds, passed=f.passed,
        expected=int(o["expected"]), delivered=int(o["received"]), missing=int(o["missing"]),
        unexplained=int(acc.unexplained if acc else o["missing"]), not_published=int(o["publish_failed"]),
        failed_delivered_events=int(o.get("failed_delivered_events", 0)),
        failed_delivered=int(o.get("failed_delivered", 0)),
        duplicates=int(o["duplicates"]), self_received=int(o["self_received"]), unknown=int(o["unknown"]),
        causes=tuple(sorted(acc.by_cause.items())) if acc else (), gaps=int(o["gaps"]),
        unsent=int(o.get("unsent", 0)), gaps_from_failed_publishes=gaps_from_failed_publishes(run),
        suspicious=int(o.get("suspicious", 0)), rejected=int(o.get("rejected", 0)),
        id_conflicts=int(o.get("id_conflicts", 0)), foreign=int(o.get("foreign", 0)), load=load, exactly_once=exact,
        failed_criteria=tuple((c.name, c.measured, c.threshold) for c in f.verdict if not c.passed and judged(c)),
        kinds=tuple(loss_kinds(acc).items()) if acc else ((PLANNED, 0), (UNPLANNED, 0),
                                                          (UNEXPLAINED_KIND, int(o["missing"]))),
        noted=tuple((c.name, c.measured, c.threshold) for c in f.verdict if not judged(c)),
    )


def outcomes(runs: Sequence) -> dict[str, Outcome]:
    return {r.record.run_id: outcome(r) for r in runs}


def by_fault(fault_entries: Sequence[dict]) -> list[dict]:
    """The failover matrix as data: per fault, each transport's run facts (in the order run)."""
    faults: dict[str, list[dict]] = {}
    for e in fault_entries:
        faults.setdefault(e["fault"] or e["name"], []).append(e)
    return [{"fault": name, "kinds": es[0]["fault_kinds"], "transports": es} for name, es in faults.items()]


def totals(ocs: Sequence[Outcome]) -> dict:
    """Sums for the summary and the conclusion."""
    return {
        "runs": len(ocs), "passed": sum(o.passed for o in ocs), "failed": [o for o in ocs if not o.passed],
        "exactly_once": [o for o in ocs if o.exactly_once], "with_loss": [o for o in ocs if o.missing],
        "expected": sum(o.expected for o in ocs), "delivered": sum(o.delivered for o in ocs),
        "missing": sum(o.missing for o in ocs), "unexplained": sum(o.unexplained for o in ocs),
        "not_published": sum(o.not_published for o in ocs),
        "over_capacity": [o for o in ocs if o.load.over_capacity],
        "all_exactly_once": bool(ocs) and all(o.exactly_once for o in ocs),
        "calm": [o for o in ocs if not o.fault_kinds], "faulted": [o for o in ocs if o.fault_kinds],
        "calm_lossy": [o for o in ocs if not o.fault_kinds and o.missing],
        "odd_gaps": [o for o in ocs if o.gaps_other],
        "hostile": [o for o in ocs if o.suspicious or o.rejected or o.id_conflicts],
        "foreign": sum(o.foreign for o in ocs),
    }


def attention(entries: Sequence[dict], skipped: dict[str, str], not_measured: Sequence[dict]) -> list[dict]:
    """The "needs attention" list from the runs' facts (:mod:`fanout.report.facts`), most serious
    first: failures, unexplained loss, loss during unplanned outages, loss where a planned fault
    acted, lateness under faults (stated, not judged), over-capacity load points, gaps nothing
    explains, forged traffic, transports skipped, parts not measured."""
    items: list[dict] = []
    items += [{"kind": "failed", "o": e} for e in entries if not e["passed"]]
    items += [{"kind": "unexplained", "o": e} for e in entries if e["by_kind"].get(UNEXPLAINED_KIND)]
    items += [{"kind": "unplanned", "o": e} for e in entries if e["by_kind"].get(UNPLANNED)]
    items += [{"kind": "loss", "o": e} for e in entries if e["missing"] and e["all_planned"]]
    items += [{"kind": "late", "o": e} for e in entries if (e.get("lateness") or {}).get("late")]
    items += [{"kind": "over_capacity", "o": e} for e in entries if e["load"]["over_capacity"]]
    items += [{"kind": "gaps", "o": e} for e in entries if e["gaps_other"]]
    items += [{"kind": "hostile", "o": e} for e in entries if e["suspicious"] or e["rejected"] or e["id_conflicts"]]
    items += [{"kind": "skipped", "what": t, "why": why} for t, why in skipped.items()]
    items += [{"kind": "not_measured", **d} for d in not_measured]
    return items


def _worst(e: dict) -> tuple:
    return (int(e.get("missing") or 0), int((e.get("lateness") or {}).get("late") or 0), int(e.get("gaps_other") or 0))


def merge_repeats(items: Sequence[dict]) -> list[dict]:
    """:func:`attention` items with repeated runs of one configuration folded into one: the worst
    run of that name stands for them (most lost, then most late), with ``runs`` (how many of them
    the item concerns) and ``of`` (how many runs of that name there were), so page one names a
    configuration once, not once per round."""
    totals: dict[str, int] = {}
    for i in items:
        if "o" in i:
            totals.setdefault(i["o"]["name"], 0)
    out: list[dict] = []
    index: dict[tuple, int] = {}
    for i in items:
        if "o" not in i:
            out.append(i)
            continue
        key = (i["kind"], i["o"]["name"])
        if key not in index:
            index[key] = len(out)
            out.append({**i, "runs": 1})
            continue
        kept = out[index[key]]
        worst = i["o"] if _worst(i["o"]) > _worst(kept["o"]) else kept["o"]
        out[index[key]] = {**kept, "o": worst, "runs": kept["runs"] + 1}
    return out


def loss_causes_frame(ocs: Sequence[Outcome]) -> pd.DataFrame:
    return pd.DataFrame([{"run": o.name, "cause": c, "count": n} for o in ocs for c, n in o.causes],
                        columns=["run", "cause", "count"])


__all__ = ["PLANNED", "UNPLANNED", "UNEXPLAINED_KIND", "LOSS_KINDS", "loss_kinds", "judged", "Outcome", "outcome", "outcomes", "by_fault", "totals", "attention", "merge_repeats", "gaps_from_failed_publishes",
           "loss_causes_frame"]
