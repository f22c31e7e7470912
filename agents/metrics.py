"""The agent's Prometheus metrics (served with ``metrics_port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as MetricCounter


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.pass_seconds = Histogram(
            "plexus_agent_pass_seconds",
            "reconcile pass duration",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.actions = MetricCounter(
            "plexus_agent_actions_total", "kernel actions applied", ["action"], registry=r
        )
        self.errors = MetricCounter(
            "plexus_agent_action_errors_total", "kernel actions that failed", ["action"], registry=r
        )
        self.rejected = MetricCounter(
            "plexus_agent_rejected_messages_total", "messages refused", ["reason"], registry=r
        )
        self.view_diverged = MetricCounter(
            "plexus_agent_view_diverged_total",
            "passes whose view of the kernel differed from a full read (verify_view only)",
            registry=r,
        )
        self.dropped = MetricCounter(
            "plexus_agent_dropped_messages_total",
            "messages dropped because the bounded receive queue was full",
            registry=r,
        )
        self.rule_packets = Gauge(
            "plexus_agent_nft_rule_packets",
            "packets counted by each rule of the agent's nftables table",
            ["rule"],
            registry=r,
        )
        self.rule_bytes = Gauge(
            "plexus_agent_nft_rule_bytes",
            "bytes counted by each rule of the agent's nftables table",
            ["rule"],
            registry=r,
        )
        self._rules: set[str] = set()

    def rule_counters(self, counters: dict[str, tuple[int, int]]) -> None:
        """Export the table's counters as read in a pass; forget rules that went."""
        for gone in self._rules - counters.keys():
            self.rule_packets.remove(gone)
            self.rule_bytes.remove(gone)
        for rule, (packets, nbytes) in counters.items():
            self.rule_packets.labels(rule).set(packets)
            self.rule_bytes.labels(rule).set(nbytes)
        self._rules = set(counters)
