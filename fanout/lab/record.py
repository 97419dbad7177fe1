"""RunRecord: everything a run saw, as frames, saved as parquet + run.json.

The column contract is in docs/architecture.md. Raw run data lives in ``data/runs/<run-id>/``
and is never edited after it is written; analysis reads it, reports are generated from it.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fanout.cards import card, one_line
from fanout.errors import ConfigError
from fanout.lab.topology import instance_ids, roles
from fanout.metrics import COUNTER_NAMES
from fanout.redact import redact_text, redact_url
from fanout.signing import check_keys

log = logging.getLogger(__name__)

#: one fleet key for a signing run over several processes or hosts: "key_id:hex secret" (never written anywhere)
SIGNING_KEY_ENV = "FANOUT_SIGNING_KEY"

PUBLICATION_COLUMNS = {
    "id": "string", "source": "string", "seq": "int64", "type": "string", "symbol": "string",
    "t_intended": "int64", "t_sent": "int64", "t_acked": "int64", "ok": "bool", "error": "string",
}
DELIVERY_COLUMNS = {
    "id": "string", "source": "string", "receiver": "string", "type": "string", "seq": "int64",
    "t_received": "int64",
}
FAULT_COLUMNS = {
    "kind": "string", "instance": "string", "t_start": "int64", "t_end": "int64", "detail": "string",
}
OUTAGE_COLUMNS = {
    "instance": "string", "t_down": "int64", "t_up": "int64", "reason": "string",
}
#: resource samples beside the run (fanout.lab.resources): one row per target per sample; the
#: counters (cpu_s, net_*_bytes) are cumulative as the target reports them
RESOURCE_COLUMNS = {
    "t": "int64", "target": "string", "kind": "string", "pid": "int64", "cpu_s": "float64",
    "memory_bytes": "int64", "memory_peak_bytes": "int64", "net_in_bytes": "int64", "net_out_bytes": "int64",
    "clients": "int64",
    "omem_max_bytes": "int64",
}
#: one row per instance: its bridge's counters (fanout.metrics) as the run ended; ``held_since_ns``:
#: reading held for the handler backlog since then, as the run ended (0: it was reading);
#: ``output_buffer_max_bytes``: the largest output buffer Redis held for its subscriber, as its
#: output-buffer check read it (RunOptions.output_buffer_check_s; -1: not read), and
#: ``output_buffer_warnings``: the times it crossed the warning fraction of the limit
INSTANCE_COLUMNS = {"instance": "string", "connected": "bool", **dict.fromkeys(COUNTER_NAMES, "int64"),
                    "subscriptions": "int64", "held_since_ns": "int64", "output_buffer_max_bytes": "int64",
                    "output_buffer_warnings": "int64"}
#: a column a frame lacks (an older record) is filled with this, where 0 would claim a reading
MISSING = {"output_buffer_max_bytes": -1}


def frame(rows: list[dict] | dict[str, list], columns: dict[str, str]) -> pd.DataFrame:
    """Build a frame with exactly ``columns`` (in order, with their dtypes), even when empty."""
    df = pd.DataFrame(rows) if rows is not None else pd.DataFrame()
    for col, dtype in columns.items():
        if col not in df.columns:
            df[col] = pd.Series([], dtype=dtype) if len(df) == 0 else _default(dtype, len(df), MISSING.get(col, 0))
    df = df[list(columns) + [c for c in df.columns if c not in columns]]
    return df.astype({c: t for c, t in columns.items()})


def _default(dtype: str, n: int, number: int = 0) -> pd.Series:
    if dtype == "bool":
        return pd.Series([False] * n)
    if dtype == "string":
        return pd.Series([""] * n, dtype="string")
    return pd.Series([number] * n, dtype=dtype)


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """One frame as a compact Parquet file: zstd, strings dictionary-encoded (ids, instance names
    and event types repeat), integers delta-encoded (timestamps and seqs rise). Any Parquet reader
    reads it; :func:`load_run` reads these and the snappy files written before."""
    strings = [c for c in df.columns if isinstance(df[c].dtype, pd.StringDtype) or df[c].dtype == object]
    ints = {c: "DELTA_BINARY_PACKED" for c in df.columns if pd.api.types.is_integer_dtype(df[c].dtype)}
    df.to_parquet(path, index=False, engine="pyarrow", compression="zstd", use_dictionary=strings,
                  column_encoding=ints)


@dataclass(repr=False, eq=False)  # identity: comparing two records field by field would read their rows
class RunRecord:
    """Everything one run saw: what was published, what each instance received, and the facts
    around it. Made by :func:`fanout.lab.run.run_scenario`, read back with :func:`load_run`,
    turned into facts by :func:`fanout.analysis.analyse`.

    Main attributes:

    * ``run_id``, ``scenario`` (the parameters, a dict), ``environment`` (versions, host, server,
      ``interrupted`` when the run stopped early), ``path`` (the saved folder, None if not saved);
    * ``publications`` and ``deliveries``: one row per publish and per delivery (times in integer
      ns); a record read from parts loads them on first use (:attr:`rows_loaded` says whether they
      are in memory; the repr and the notebook card never load them);
    * ``instances`` (each bridge's counters at the end), ``faults``, ``outages``, ``resources``;
    * ``summary``: the counts and histograms kept while the run went, None for older runs.

    Methods: :meth:`save` (write ``<root>/<run_id>/``), :meth:`count` (rows without loading them),
    :meth:`meta` (what run.json holds).
    """

    run_id: str
    scenario: dict[str, Any]
    environment: dict[str, Any]
    publications: pd.DataFrame
    deliveries: pd.DataFrame
    instances: pd.DataFrame
    t0: int = 0
    t_end: int = 0
    notes: list[str] = field(default_factory=list)
    path: Path | None = None
    faults: pd.DataFrame = field(default_factory=lambda: frame([], FAULT_COLUMNS))
    outages: pd.DataFrame = field(default_factory=lambda: frame([], OUTAGE_COLUMNS))
    #: server-side facts gathered at the end (e.g. output-buffer disconnections)
    redis_stats: dict[str, Any] = field(default_factory=dict)
    #: Redis and process resource samples (empty when the run was not sampled)
    resources: pd.DataFrame = field(default_factory=lambda: frame([], RESOURCE_COLUMNS))
    #: the run's :class:`fanout.lab.summary.Summary` (kept online, merged over workers); None for
    #: runs made before summaries, and for a run recovered from its parts alone
    summary: Any = None
    #: the folder of Parquet parts the rows were written to as the run went (None: none)
    parts: Path | None = None
    #: the run's verdict ("PASS"/"FAIL") once analysed (:meth:`set_status`), kept in run.json; None before
    status: str | None = None

    def __repr__(self) -> str:  # never reads the rows (the dataclass repr would: it shows every field)
        sc = self.scenario or {}
        stopped = " INTERRUPTED" if (self.environment or {}).get("interrupted") else ""
        return one_line(f"<RunRecord {self.run_id}: {sc.get('name', '?')}, {self._transport()}, "
                        f"{len(self.instances)} instances, rows {self._rows_where(short=True)}{stopped}>")

    def _transport(self) -> str:
        return str((self.scenario or {}).get("transport") or (self.environment or {}).get("transport") or "?")

    def _rows_where(self, short: bool = False) -> str:
        """Where the rows are, without reading them (counts from memory or the summary)."""
        if short:
            return "in memory" if self.rows_loaded else "not loaded"
        if self.rows_loaded or self.summary is not None:
            n = f"{self.count('publications'):,} publications, {self.count('deliveries'):,} deliveries"
        else:
            n = ""
        if self.rows_loaded:
            return f"{n}, in memory"
        where = f"parts in {self.parts}" if self.parts is not None else "not archived (summary only)" \
            if self.summary is not None else "none"
        return f"{n + ', ' if n else ''}not loaded ({where})"

    def _repr_html_(self) -> str:
        """The notebook's card: what ran, how, where its rows are and where it is saved (no row is read)."""
        sc, env = self.scenario or {}, self.environment or {}
        stopped = env.get("interrupted")
        rate, dur = sc.get("rate_per_s"), sc.get("duration_s")
        return card(self.run_id, [
            ("scenario", sc.get("name", "?")), ("transport", self._transport()),
            ("instances", len(self.instances)),
            ("rate", f"{float(rate):g} events/s" if rate is not None else None),
            ("duration", f"{float(dur):g} s" if dur is not None else None),
            ("rows", self._rows_where()),
            ("interrupted", f"interrupted after {stopped['after_s']:g} s of {stopped['of_s']:g} s" if stopped else None),
            ("saved", str(self.path) if self.path is not None else "not saved"),
        ], kind="RunRecord")

    @property
    def rows_loaded(self) -> bool:
        """Whether the publication and delivery rows are in memory (a record read from parts
        loads them only when something asks for :attr:`publications` or :attr:`deliveries`)."""
        return self.__dict__.get("_publications") is not None and self.__dict__.get("_deliveries") is not None

    def _load_rows(self) -> None:
        """Read the rows written as parts, as :func:`build_record` would have made the frames
        (publications in schedule order, the warmup left out)."""
        if self.parts is None and self.summary is not None and self.count("deliveries", summary=True):
            raise ConfigError(f"run {self.run_id} keeps only its summary: its rows (publications, deliveries) "
                              f"were not archived with it, so nothing that needs them can be computed")
        log.info("run %s: reading its rows from %s", self.run_id, self.parts)
        pubs = read_parts(self.parts, "publications") if self.parts is not None else None
        dels = read_parts(self.parts, "deliveries") if self.parts is not None else None
        pubs, dels = frame(pubs if pubs is not None else [], PUBLICATION_COLUMNS), \
            frame(dels if dels is not None else [], DELIVERY_COLUMNS)
        pubs = pubs.sort_values("t_intended", kind="stable").reset_index(drop=True)
        if float((self.scenario or {}).get("warmup_s") or 0) > 0:
            pubs, dels = drop_warmup(pubs, dels, int(self.t0))
        self.__dict__["_publications"], self.__dict__["_deliveries"] = pubs, dels

    def count(self, name: str, summary: bool = False) -> int:
        """Rows of ``publications`` or ``deliveries``: from the summary while they are not in
        memory (``summary``: from the summary whatever is in memory)."""
        if not summary and (self.rows_loaded or self.summary is None):
            return len(getattr(self, name))
        s = self.summary
        if name == "publications":
            return sum(len(b) for b in s.published.values()) + sum(s.failed_by().values())
        return sum(len(b) + s.duplicates.get(k, 0) for k, b in s.received.items()) + sum(s.unsequenced.values())

    def meta(self) -> dict[str, Any]:
        scen = dict(self.scenario)
        if scen.get("redis_url"):
            scen["redis_url"] = redact_url(scen["redis_url"])
        return {
            "run_id": self.run_id, "scenario": scen, "environment": self.environment,
            "t0": self.t0, "t_end": self.t_end, "notes": [redact_text(n) for n in self.notes],
            "redis_stats": self.redis_stats, **({"status": self.status} if self.status else {}),
            "counts": {"publications": self.count("publications"), "deliveries": self.count("deliveries"),
                       "instances": len(self.instances)},
        }

    def save(self, root: str | os.PathLike = "data/runs") -> Path:
        """Write ``<root>/<run_id>/`` (the frames as parquet files and run.json); return the folder."""
        out = Path(root) / self.run_id
        out.mkdir(parents=True, exist_ok=True)
        # rows already written as parts of this folder while the run went stay there, not copied; but
        # a record recovered from its parts holds them cut where every process had recorded: written whole
        in_parts = not (self.environment or {}).get("recovered_from_parts") and \
            self.parts is not None and Path(self.parts).resolve().parent == out.resolve() and \
            any(Path(self.parts).glob("deliveries-*.parquet")) | any(Path(self.parts).glob("publications-*.parquet"))
        for name in ("publications", "deliveries", "instances", "faults", "outages", "resources"):
            if in_parts and name in ("publications", "deliveries"):
                continue
            write_parquet(getattr(self, name), out / f"{name}.parquet")
        if self.summary is not None:
            (out / SUMMARY_FILE).write_bytes(self.summary.to_bytes())
        (out / "run.json").write_text(json.dumps(self.meta(), indent=2, default=str) + "\n")
        self.path = out
        return out

    def set_status(self, status: str) -> None:
        """Record the run's verdict (``findings.status``: "PASS" or "FAIL"), and, when the run is
        saved, in its ``run.json`` (that key only, the rows untouched), so :func:`fanout.lab.runs`
        lists it without analysing anything. Runs saved before this was recorded read as
        "not analysed" there."""
        self.status = str(status)
        f = Path(self.path) / "run.json" if self.path is not None else None
        if f is None or not f.exists():
            return
        meta = json.loads(f.read_text())
        meta["status"] = self.status
        tmp = f.with_name("run.json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
        tmp.replace(f)

    # ------------------------------------------------------------ exploring a run (see explore())

    def events(self, *, receiver=None, source=None, type=None, status=None, since=None, until=None) -> pd.DataFrame:
        """One row per (event, receiver) that should have been delivered, and per delivery that
        should not have been (duplicate, self, unknown): ``id, source, receiver, type, seq, due,
        sent, received`` (UTC datetimes), ``latency_ms`` (from due), ``latency_sent_ms`` (from the
        send), ``status`` (delivered, late, duplicate, self, unknown, missing) and ``cause`` (a
        missing one's, from the loss account). Filters: a name or a list of names for
        ``receiver``/``source``/``type``/``status``; ``since``/``until`` (datetime, ISO text or
        seconds from the run's start) bound the due time (a delivery no event names: its receive
        time). :func:`fanout.analysis.explore.events`."""
        return explore("events", self, receiver=receiver, source=source, type=type, status=status,
                       since=since, until=until)

    def latency(self, *, receiver=None, source=None, type=None, since=None, until=None) -> pd.DataFrame:
        """Per delivered event (first delivery, delivered or late): ``receiver, source, type, id,
        received, latency_ms`` (from due) and ``latency_sent_ms`` (from the send).
        :func:`fanout.analysis.explore.latency`."""
        return explore("latency", self, receiver=receiver, source=source, type=type, since=since, until=until)

    def losses(self) -> pd.DataFrame:
        """The loss account's rows: ``receiver, cause, kind, fault, count, evidence``
        (:func:`fanout.analysis.accounting.account_losses`)."""
        return explore("losses", self)

    def timeline(self, interval_s: float = 1.0) -> pd.DataFrame:
        """Per ``interval_s`` of the run: ``start`` (UTC), ``deliveries``, ``missing`` (by due time),
        ``p50_ms``/``p99_ms`` latency where the interval's samples carry them, ``reconnects``.
        :func:`fanout.analysis.explore.timeline`."""
        return explore("timeline", self, interval_s=interval_s)


class _Rows:
    """:attr:`RunRecord.publications` / :attr:`~RunRecord.deliveries`: a frame in memory, or
    (set to None with :attr:`RunRecord.parts` given) read from the parts on first use."""

    def __init__(self, name: str) -> None:
        self.key = f"_{name}"

    def __get__(self, obj, typ=None):
        if obj is None:
            return self
        v = obj.__dict__.get(self.key)
        if v is None:
            obj._load_rows()
            v = obj.__dict__[self.key]
        return v

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.key] = value


RunRecord.publications = _Rows("publications")  # type: ignore[assignment]
RunRecord.deliveries = _Rows("deliveries")      # type: ignore[assignment]


class OutageFrame(pd.DataFrame):
    """:attr:`RunRecord.outages`: the outage rows as recorded (``instance, t_down, t_up, reason``,
    integer ns; ``t_up`` 0: never back), a plain DataFrame for everything the analysis does with
    it — and, called, ``record.outages()``, the same rows to explore: ``instance, down, up`` (UTC
    datetimes, ``up`` NaT when never back), ``duration_s`` (to the run's end when never back),
    ``reason`` (:func:`fanout.analysis.explore.outages`). Any operation on it gives a plain DataFrame."""

    def __call__(self) -> pd.DataFrame:
        rec = getattr(self, "_record", None)
        if rec is None:
            raise ConfigError("outages(): this frame is not attached to a run record (call record.outages())")
        return explore("outages", rec)


class _Outages:
    """:attr:`RunRecord.outages`, stored as a plain frame and read as an :class:`OutageFrame`."""

    def __get__(self, obj, typ=None):
        if obj is None:
            return self
        out = OutageFrame(obj.__dict__["_outages"])
        object.__setattr__(out, "_record", obj)
        return out

    def __set__(self, obj, value) -> None:
        obj.__dict__["_outages"] = pd.DataFrame(value) if isinstance(value, OutageFrame) else value


RunRecord.outages = _Outages()  # type: ignore[assignment]

#: the module that answers a record's exploring questions (:meth:`RunRecord.events`, ...)
EXPLORE_MODULE = "fanout.analysis.explore"


def explore(question: str, record: RunRecord, **kwargs):
    """The one plug-in point through which a :class:`RunRecord` answers ``events()``,
    ``latency()``, ``losses()``, ``outages()`` and ``timeline()``: the function ``question`` of
    :data:`EXPLORE_MODULE` (``fanout.analysis.explore``), imported by name when first asked.

    Why by name: the answers need the analysis layer (a missing event's cause is the loss
    account's, :mod:`fanout.analysis.accounting`), and the layers point down only — the lab never
    imports the analysis (import-linter's layers contract, docs/architecture.md). The record's
    methods are where a notebook user looks for them (``rec.events(status="missing")``), so they
    stay on the record as thin delegates, and the work lives in the analysis, which imports the
    lab as it always does. ``importlib`` keeps the lab free of any static import of the analysis
    (``import fanout.lab.record`` loads no ``fanout.analysis`` module; tests/test_explore.py checks
    it), and the contracts stay true: the dependency is a call into the layer above at run time,
    like a registry's, never an import at load time."""
    module = importlib.import_module(EXPLORE_MODULE)
    return getattr(module, question)(record, **kwargs)

SUMMARY_FILE = "summary.bin"
PARTS_DIR = "parts"


def read_parts(folder: str | os.PathLike, name: str) -> pd.DataFrame | None:
    """Every part ``<name>-*.parquet`` of a parts folder as one frame, in the order they were
    written per process (None when there is none). Half-written parts never show: a part is
    written under a temporary name and renamed."""
    files = sorted(Path(folder).glob(f"{name}-*.parquet"))
    if not files:
        return None
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def scan_parts(folder: str | os.PathLike, name: str, where=None, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of the parts ``<name>-*.parquet`` that match ``where`` (a ``pyarrow.compute``
    expression), only ``columns``: a filtered scan (pyarrow datasets), never the whole record in
    memory. An empty frame when there is no part."""
    import pyarrow.dataset as ds

    files = sorted(str(f) for f in Path(folder).glob(f"{name}-*.parquet"))
    if not files:
        return pd.DataFrame(columns=columns or [])
    return ds.dataset(files, format="parquet").to_table(filter=where, columns=columns).to_pandas()


def drop_warmup(pub_df: pd.DataFrame, del_df: pd.DataFrame, t0: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Publications due before ``t0`` (the warmup) and their deliveries left out."""
    warm_ids = set(pub_df.loc[pub_df["t_intended"] < t0, "id"])
    return (pub_df[~pub_df["id"].isin(warm_ids)].reset_index(drop=True),
            del_df[~del_df["id"].isin(warm_ids)].reset_index(drop=True))


def _rows(p: Path, name: str, columns: dict[str, str], meta: dict) -> pd.DataFrame:
    """A run's publications or deliveries: the whole file, else its parts (read back whole, the
    warmup left out and the publications in schedule order, as :func:`build_record` gives them)."""
    f = p / f"{name}.parquet"
    if f.exists():
        return frame(pd.read_parquet(f), columns)
    df = read_parts(p / PARTS_DIR, name)
    return frame(df if df is not None else [], columns)


def load_run(path_or_run_id: str | os.PathLike) -> RunRecord:
    """Read a run folder written by :meth:`RunRecord.save`: whole files, or rows written as parts
    while the run went (``parts/``), with ``summary.bin`` as :attr:`RunRecord.summary` when there
    is one. A folder with parts but no ``run.json`` (a run killed before it could save) is read
    from its parts and ``parts/recording.json``, marked ``interrupted``.

    ``path_or_run_id``: the folder (``data/runs/<run-id>``), or a run id (or a prefix only one run
    has) found in ``data/runs/`` or ``reports/*/runs/`` under the current directory or the
    repository root (:func:`fanout.lab.archive.find_run`; :func:`fanout.lab.runs` lists them).
    Rows written as parts are not read here: they load when first asked for.

    Returns the :class:`RunRecord`; raises :class:`~fanout.errors.ConfigError` (one line) when
    nothing, or more than one run, matches."""
    p = Path(path_or_run_id)
    if not p.exists() and len(p.parts) == 1:  # not a folder here: a run id
        from fanout.lab.archive import find_run

        p = find_run(str(path_or_run_id))
    if not (p / "run.json").exists():
        if (p / PARTS_DIR / "recording.json").exists():
            return _recover(p)
        raise ConfigError(f"{p} is not a run folder (no run.json)")
    meta = json.loads((p / "run.json").read_text())

    def optional(name: str, columns: dict[str, str]) -> pd.DataFrame:
        f = p / f"{name}.parquet"
        return frame(pd.read_parquet(f) if f.exists() else [], columns)

    summary = _summary(p)
    if (p / "publications.parquet").exists() or (p / "deliveries.parquet").exists():
        pubs, dels = _rows(p, "publications", PUBLICATION_COLUMNS, meta), _rows(p, "deliveries", DELIVERY_COLUMNS, meta)
    else:  # rows written as parts: read when something asks for them (the analysis needs the summary)
        pubs = dels = None
    return RunRecord(
        run_id=meta["run_id"], scenario=meta["scenario"], environment=meta["environment"],
        publications=pubs, deliveries=dels,
        instances=frame(pd.read_parquet(p / "instances.parquet"), INSTANCE_COLUMNS),
        t0=int(meta.get("t0", 0)), t_end=int(meta.get("t_end", 0)), notes=list(meta.get("notes", [])), path=p,
        faults=optional("faults", FAULT_COLUMNS), outages=optional("outages", OUTAGE_COLUMNS),
        redis_stats=dict(meta.get("redis_stats", {})), resources=optional("resources", RESOURCE_COLUMNS),
        summary=summary, parts=p / PARTS_DIR if (p / PARTS_DIR).is_dir() else None,
        status=meta.get("status"),
    )


def _summary(p: Path):
    f = p / SUMMARY_FILE
    if not f.exists():
        return None
    from fanout.lab.summary import Summary

    return Summary.from_bytes(f.read_bytes())


def _recover(p: Path) -> RunRecord:
    """A run folder with parts and no run.json: what the parts hold, marked interrupted."""
    meta = json.loads((p / PARTS_DIR / "recording.json").read_text())
    pubs = _rows(p, "publications", PUBLICATION_COLUMNS, meta).sort_values("t_intended", kind="stable")
    dels = _rows(p, "deliveries", DELIVERY_COLUMNS, meta)
    t0 = int(meta.get("t0") or 0)
    if meta.get("warmup"):
        pubs, dels = drop_warmup(pubs, dels, t0)
    cut = _recorded_until(p / PARTS_DIR)
    note = []
    if cut is not None:  # every process wrote its rows up to its last part: the run is what all of them recorded
        late = set(pubs.loc[pubs["t_sent"] > cut - IN_FLIGHT_NS, "id"])
        if late:
            pubs, dels = pubs[~pubs["id"].isin(late)], dels[~dels["id"].isin(late)].reset_index(drop=True)
            note = [f"cut at {(cut - IN_FLIGHT_NS - t0) / 1e9:.1f} s: publications sent later than "
                    f"{IN_FLIGHT_NS / 1e9:g} s before the last time every process had written its rows "
                    f"({len(late):,} of them) are left out with their deliveries"]
    scen = dict(meta.get("scenario") or {})
    if scen.get("redis_url"):
        scen["redis_url"] = redact_url(scen["redis_url"])
    names = instance_ids(_scenario_of(scen)) if scen else []
    t_end = int(max(dels["t_received"].max() if len(dels) else 0, pubs["t_sent"].max() if len(pubs) else 0, t0))
    planned = float(scen.get("warmup_s") or 0) + float(scen.get("duration_s") or 0)
    return RunRecord(
        run_id=str(meta.get("run_id") or p.name), scenario=scen,
        environment={"interrupted": {"after_s": round((t_end - t0) / 1e9, 3), "of_s": planned},
                     "recovered_from_parts": True},
        publications=pubs.reset_index(drop=True), deliveries=dels,
        instances=frame([{"instance": n, "connected": False} for n in names], INSTANCE_COLUMNS),
        t0=t0, t_end=t_end, path=p, parts=p / PARTS_DIR,
        notes=["recovered from the parts written before the run stopped without saving: "
               "no instance counters, no outages, no summary", *note],
    )


#: a recovered run keeps the events sent this long before every process's last written row
IN_FLIGHT_NS = 1_000_000_000


def _recorded_until(parts: Path) -> int | None:
    """The latest time every process of a run had written its rows up to: per process (the tag
    in its part names) the last t_received or t_sent in its parts, the least of those."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    last: dict[str, int] = {}
    for name, col in (("deliveries", "t_received"), ("publications", "t_sent")):
        for f in parts.glob(f"{name}-*.parquet"):
            tag = f.name[len(name) + 1:].rsplit("-", 1)[0]
            t = ds.dataset(str(f)).to_table(columns=[col]).column(col)
            if len(t):
                last[tag] = max(last.get(tag, 0), int(pc.max(t).as_py()))
    return min(last.values()) if len(last) > 1 else None


def _scenario_of(scen: dict):
    from fanout.lab.scenario import from_dict

    return from_dict(scen)


def server_facts(server=None, binary: str | None = None) -> dict[str, Any]:
    """``environment["server"]``: the product (Redis or Valkey), its release, the Redis version it
    implements (from ``INFO server``: a :class:`fanout.capabilities.ServerVersion`) and, for a
    throwaway server, the binary that ran it (None for a server given by URL)."""
    facts = server.as_dict() if server is not None else {"product": None, "version": None, "redis_version": None}
    return {**facts, "binary": binary}


def name_server(rec: "RunRecord", server=None, binary: str | None = None) -> None:
    """State in ``rec.environment`` which server the run used: ``redis_server`` ("Valkey 9.1.2
    (implements Redis 7.2.4)", what the report's scope shows) and ``server`` (:func:`server_facts`)."""
    if server is not None:
        rec.environment["redis_server"] = str(server)
    rec.environment["server"] = server_facts(server, binary)


def environment(redis_version: str | None = None) -> dict[str, Any]:
    """Versions and machine facts a report must state (``redis_server``: the server's product and
    version, :func:`name_server` adds the binary; ``provenance``: the commit, uncommitted changes,
    fanout version and command line of this process, :mod:`fanout.lab.provenance`)."""
    import redis

    try:
        import hiredis  # noqa: F401

        hiredis_version = getattr(hiredis, "__version__", "installed")
    except ImportError:
        hiredis_version = None
    from fanout import __version__
    from fanout.lab.provenance import provenance

    return {
        "fanout": __version__,
        "redis_server": redis_version,
        "python": sys.version.split()[0],
        "redis_py": redis.__version__,
        "hiredis": hiredis_version,
        "pandas": pd.__version__,
        "host": platform.node(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "provenance": provenance(),
    }


def signing_key_id(run_id: str) -> str:
    """The key id a signing run uses: FANOUT_SIGNING_KEY's, else ``run-`` and the run id's random suffix."""
    env = os.environ.get(SIGNING_KEY_ENV)
    return env.partition(":")[0] if env else "run-" + run_id.rsplit("-", 1)[-1]


def run_signing_keys(run_id: str, *, shared: bool) -> dict[str, bytes]:
    """The key every bridge of a signing run gets: FANOUT_SIGNING_KEY when set, else (one process
    hosting every instance) a new random one; only its id is ever written (:func:`protection`)."""
    env = os.environ.get(SIGNING_KEY_ENV)
    if env:
        kid, _, secret = env.partition(":")
        try:
            return check_keys({kid: bytes.fromhex(secret)})
        except ValueError:
            raise ConfigError(f"{SIGNING_KEY_ENV}: must be key_id:hex-secret (e.g. k1:$(openssl rand -hex 32))") from None
    if shared:
        raise ConfigError(f"signing: a run over worker processes or agents needs one key for all of them: set "
                          f"{SIGNING_KEY_ENV}=key_id:hex-secret for every process, or use process_mode=single")
    return {signing_key_id(run_id): os.urandom(32)}


def protection(sc, url: str, run_id: str) -> dict[str, Any]:
    """What protected a run (``environment["protection"]``): signing on or off and the key id (never
    the key), the ACL user the bridges connected as (None: the default user)."""
    from urllib.parse import unquote, urlsplit

    user = urlsplit(url).username if url else None
    signing = bool(getattr(sc, "signing", False))
    return {"signing": signing, "key_id": signing_key_id(run_id) if signing else None,
            "acl_user": unquote(user) if user else None}


def columns_frame(data: dict[str, list] | list[tuple], columns: dict[str, str]) -> pd.DataFrame:
    """Columns (``{name: list}``, the recorder's form) or rows (tuples in column order) -> a frame
    with exactly ``columns``."""
    if isinstance(data, pd.DataFrame):
        return frame(data, columns)
    if data is None:
        return frame([], columns)
    if isinstance(data, dict):
        n = len(next(iter(data.values()), ()))
        return frame({c: data[c] for c in columns if c in data} if n else [], columns)
    return frame([dict(zip(columns, r)) for r in data], columns)


def build_record(sc, url: str, run_id: str, version: str | None, t0: int, t_end: int,
                 pubs: dict[str, list] | list[tuple] | pd.DataFrame | None,
                 deliveries: dict[str, list] | list[tuple] | pd.DataFrame | None,
                 inst_rows: list[dict], fault_log: list, outages: list[tuple], stats: dict) -> RunRecord:
    """Columns (or rows) from one or many processes -> one RunRecord (frames with the contract's dtypes)."""
    if pubs is None and deliveries is None:  # rows in parts: read when asked for (RunRecord.parts)
        pub_df = del_df = None
    else:
        pub_df = columns_frame(pubs, PUBLICATION_COLUMNS)
        pub_df = pub_df.sort_values("t_intended", kind="stable").reset_index(drop=True)  # the schedule's order
        del_df = columns_frame(deliveries, DELIVERY_COLUMNS)
        if sc.warmup_s > 0:
            pub_df, del_df = drop_warmup(pub_df, del_df, t0)
    scen = sc.to_dict()
    scen["redis_url"] = redact_url(url) if sc.redis_url else None
    ids = instance_ids(sc)
    if sc.topology != "mesh":  # analysis: who publishes, who is expected to receive
        pubs_i, recv_i = roles(sc)
        scen["publishers"] = [ids[i] for i in pubs_i]
        scen["receivers"] = [ids[i] for i in recv_i]
    env_info = environment(version)
    env_info["redis_url"] = redact_url(url)
    env_info["transport"] = sc.transport
    env_info["protection"] = protection(sc, url, run_id)
    order = {name: k for k, name in enumerate(ids)}
    inst_rows = sorted(inst_rows, key=lambda r: order.get(r["instance"], len(order)))
    return RunRecord(
        run_id=run_id, scenario=scen, environment=env_info,
        publications=pub_df, deliveries=del_df, instances=frame(inst_rows, INSTANCE_COLUMNS),
        t0=t0, t_end=t_end,
        faults=frame([vars(x) if not isinstance(x, dict) else x for x in fault_log], FAULT_COLUMNS),
        outages=frame([dict(zip(OUTAGE_COLUMNS, o)) for o in outages], OUTAGE_COLUMNS),
        redis_stats=stats,
    )
