"""Prometheus metrics of the controller, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.api_latency = Histogram(
            "plexus_api_request_seconds",
            "REST API request latency",
            ["method", "route", "status"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.publishes = Counter(
            "plexus_publishes_total", "MQTT messages published", ["topic_kind"], registry=r
        )
        self.publish_bytes = Counter(
            "plexus_publish_bytes_total", "payload bytes published", ["topic_kind"], registry=r
        )
        self.rejected = Counter(
            "plexus_rejected_messages_total",
            "incoming messages refused, by reason and by the host whose topic carried it "
            "(the broker's ACL makes that the sender; '-' when no known host)",
            ["reason", "host"],
            registry=r,
        )
        self.dropped = Counter(
            "plexus_dropped_messages_total",
            "incoming messages dropped because the bounded receive queue was full",
            registry=r,
        )
        self.status_coalesced = Counter(
            "plexus_status_coalesced_total",
            "host status messages superseded by a newer one before they were folded in",
            registry=r,
        )
        self.hosts_online = Gauge("plexus_hosts_online", "hosts reporting online", registry=r)
        self.hosts_in_sync = Gauge(
            "plexus_hosts_in_sync", "online hosts that applied everything", registry=r
        )
        self.collected = Counter(
            "plexus_compartments_collected_total",
            "runtime-owned compartments deleted because their namespace was gone",
            registry=r,
        )
        self.waits = Counter(
            "plexus_wait_total", "wait=true calls by outcome", ["outcome"], registry=r
        )
        self.broker_connected = Gauge(
            "plexus_broker_connected", "1 while connected to the broker", registry=r
        )
        self.leader_epoch = Gauge(
            "plexus_leader_epoch",
            "the epoch this replica leads at (publishes), 0 while it follows",
            registry=r,
        )
        self.reconciles = Counter(
            "plexus_broker_reconciles_total", "retained-state reconciliations", registry=r
        )
        self.events = Counter(
            "plexus_host_events_total", "events reported by agents", ["level"], registry=r
        )
