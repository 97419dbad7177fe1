"""Benchmarks: fanout's simulator/bridge against a minimal redis-py baseline, side by side.

    python -m benchmarks                 # full run (a few minutes on 2 cores)
    python -m benchmarks --quick         # smoke run (< 60 s)
    python -m benchmarks --only latency,knee,memory,profile --out DIR

Every measurement runs both harnesses in the same process, one after the other, against a
fresh throwaway ``redis-server``, with the same schedule (``fanout.lab.schedule.schedule``), the
same payloads (``fanout.market.SyntheticMarket``) and the same arithmetic
(``fanout.analysis.analyse`` over a ``RunRecord``), so a ratio compares code, not moments.

Modules: ``baseline`` (the redis-py harness), ``harness`` (one measured step: server, CPU
sampler, run, analysis, pass/fail), ``knee`` (the pure search), ``memory`` (RSS per
instance, in subprocesses), ``profiling`` (cProfile of one short run), ``machine`` (what the
numbers were measured on), ``runner`` (the CLI, the table, the JSON).
"""
