"""Analysis: a RunRecord in, facts out (pure functions over frames; nothing prints or writes)."""
from __future__ import annotations

from fanout.analysis.accounting import LossAccount, account_losses
from fanout.analysis.findings import Findings, analyse, compare, split_foreign
from fanout.analysis.latency import latency_samples, latency_stats
from fanout.analysis.verdict import Criterion, Thresholds

__all__ = ["Criterion", "Findings", "Thresholds", "analyse", "compare", "split_foreign", "latency_samples",
           "latency_stats", "LossAccount", "account_losses"]
