"""One representative message of every kind; the golden frames are their encodings."""

from __future__ import annotations

import proto

NETWORK = proto.NetworkSpec(
    id="blue",
    mode="overlay",
    subnet="10.1.0.0/24",
    gateway="10.1.0.1",
    vni=4096,
    mtu=1450,
    generation=1,
)
RECORD = proto.EndpointRecord(
    id="ep-1", host="h1", mac="02:00:00:00:00:01", ip="10.1.0.2", vtep="198.18.0.1", gen=2
)
SNAPSHOT = proto.NetworkSnapshot(network="blue", generation=2, shard=0, shards=1, records=(RECORD,))
INDEX = proto.SnapshotIndex(network="blue", generation=7, shards=(7, 2, 5), layout="5e1f0c2a")
CHANGE = proto.NetworkChange(
    network="blue",
    generation=3,
    upserts=(
        proto.EndpointRecord(
            id="ep-2", host="h2", mac="02:00:00:00:00:02", ip="10.1.0.3", vtep="198.18.0.2", gen=3
        ),
    ),
    deletes=("ep-1",),
)
DESIRED = proto.HostDesired(
    host="h1",
    generation=5,
    networks=(NETWORK,),
    compartments=(
        proto.Compartment(
            id="c1",
            endpoints=(
                proto.LocalEndpoint(
                    id="ep-1",
                    network="blue",
                    index=0,
                    mac="02:00:00:00:00:01",
                    ip="10.1.0.2",
                    prefixlen=24,
                    default_route=True,
                ),
            ),
        ),
    ),
)
STATUS = proto.HostStatus(
    host="h1",
    state="online",
    version="0.1.0",
    vtep="198.18.0.1",
    desired_generation=5,
    networks={"blue": 3},
    errors=("boom",),
    time=1700000000.5,
)
EVENT = proto.Event(
    host="h1", level="error", event="endpoint_failed", detail="EEXIST", time=1700000000.25
)

ALL: dict[str, proto.Wire] = {
    "network": NETWORK,
    "snapshot": SNAPSHOT,
    "snapshot_index": INDEX,
    "change": CHANGE,
    "desired": DESIRED,
    "status": STATUS,
    "event": EVENT,
}
