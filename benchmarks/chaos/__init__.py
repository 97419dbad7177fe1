"""The reliability suite (``make chaos``; issue #17 item 4): faults nobody planned, hostile
input, a slow handler, server limits, a soak and security, each against servers it starts itself,
each stating what was injected, what was lost, what was attributed and what was left behind.

    python -m benchmarks.chaos --small          # CI sizes, a few minutes
    python -m benchmarks.chaos                  # full sizes (> 10 min with the soak); writes docs/reliability.md
    python -m benchmarks.chaos --only hostile,kill-pubsub

Modules: ``common`` (sizes, the result, bounded helpers), ``runner`` (one process per case, what
it left behind), ``cases`` (the registry), one module per kind of case (``outages``, ``hostile``,
``slow``, ``limits``, ``soak``, ``security``), ``summary`` (a run's losses in the table's words),
``render`` and ``doc`` (the table, docs/reliability.md).
"""
