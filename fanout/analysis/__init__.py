"""Analysis: a RunRecord in, facts out (pure functions over frames; nothing prints or writes)."""
from __future__ import annotations

from fanout.analysis.accounting import LossAccount, account_losses
from fanout.analysis.findings import Criterion, Findings, Thresholds, analyse, compare, latency_samples, latency_stats

__all__ = ["Criterion", "Findings", "Thresholds", "analyse", "compare", "latency_samples", "latency_stats",
           "LossAccount", "account_losses"]
