from __future__ import annotations

import pytest

from proto import BadTopic, topics


def test_builders_and_parser_agree() -> None:
    assert topics.parse(topics.host_desired("h1")) == topics.Topic("host_desired", host="h1")
    assert topics.parse(topics.host_status("h1")) == topics.Topic("host_status", host="h1")
    assert topics.parse(topics.host_events("h1")) == topics.Topic("host_events", host="h1")
    assert topics.parse(topics.network("n")) == topics.Topic("network", network="n")
    assert topics.parse(topics.network_changes("n")) == topics.Topic("network_changes", network="n")
    assert topics.parse(topics.network_snapshot("n", 7)) == topics.Topic(
        "network_snapshot", network="n", shard=7
    )
    assert topics.parse(topics.network_snapshot_index("n")) == topics.Topic(
        "network_snapshot_index", network="n"
    )
    assert topics.host_desired("h1") == "plexus/v1/hosts/h1/desired"
    assert topics.network_snapshots("n") == "plexus/v1/networks/n/snapshot/+"
    # one subscription brings a network's shards and their index
    assert topics.network_snapshot_index("n") == "plexus/v1/networks/n/snapshot/index"


@pytest.mark.parametrize(
    "topic",
    [
        "plexus/v2/hosts/h1/status",
        "other/v1/hosts/h1/status",
        "plexus/v1/hosts/H1/status",
        "plexus/v1/hosts/+/status",
        "plexus/v1/hosts/h1/status/extra",
        "plexus/v1/hosts/h1/unknown",
        "plexus/v1/hosts//status",
        "plexus/v1/networks/n/snapshot/x",
        "plexus/v1/networks/n/snapshot/Index",
        "plexus/v1/networks/n/snapshot/index/0",
        "plexus/v1/networks/n/snapshot/99999",
        "plexus/v1/networks/n/snapshot/-1",
        "plexus/v1/networks/#",
        "plexus/v1/networks/n/other",
        "plexus/v1",
        "",
    ],
)
def test_bad_topics_are_rejected(topic: str) -> None:
    with pytest.raises(BadTopic):
        topics.parse(topic)


@pytest.mark.parametrize("bad", ["", "A", "a/b", "+", "#", "a b", "-a", "x" * 64])
def test_builders_refuse_bad_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        topics.host_desired(bad)
