"""Exporters: a bridge's counters and histograms in other systems' terms, each an extra
(``fanout[prometheus]``: :mod:`fanout.exporters.prometheus`; ``fanout[otel]``:
:mod:`fanout.exporters.otel`). They read the core
(``bridge.metrics()``, ``bridge.histograms()``); the core never imports them (an import-linter
contract in pyproject.toml)."""
