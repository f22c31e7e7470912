"""The side-by-side benchmark's own logic (``benchmarks.versus_ovn``): the ratio per row,
which OVN figure a row is set against, ovn-nbctl's wait-time output, and a controller
without the bulk API told apart from a refused batch."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from benchmarks.versus_ovn import compare, ratio, rows, waited_hv
from benchmarks.versus_plexus import BatchMissing, batch, has_batch
from cli.client import AsyncClient

#: what ``ovn-nbctl --wait=hv --print-wait-time lsp-add …`` printed (OVN 23.03.1)
PRINTED = (
    "Time spent on processing nb_cfg 3:\n\tovn-northd delay before processing:\t1ms\n"
    "\tovn-northd completion:\t\t\t2ms\n\tovn-controller(s) completion:\t\t13ms\n"
)
OP = {"op": "delete", "kind": "endpoint", "id": "e0"}


def test_the_ratio_is_plexus_over_ovn_and_none_unless_both_sides_have_a_figure() -> None:
    assert ratio(20.0, 40.0) == 0.5
    assert ratio(90.0, 30.0) == 3.0
    assert ratio(None, 40.0) is None
    assert ratio(20.0, None) is None
    assert ratio(20.0, 0.0) is None


def test_rows_are_compared_by_their_own_samples_or_the_ovn_row_they_name() -> None:
    plexus = {"add": [10.0, 30.0, 20.0], "burst": [300.0], "restart_host_online": [5.0]}
    ovn = {"add": [40.0, 40.0], "bulk": [100.0, 120.0]}
    out = {r["row"]: r for r in compare(rows(200), plexus, ovn)}
    assert out["add"]["plexus"]["p50"] == 20.0 and out["add"]["ratio_p50"] == 0.5
    assert out["add"]["ratio_p99"] == 0.75
    # Plexus's concurrent calls against OVN's one transaction: OVN has one way only
    assert out["burst"]["ovn"]["n"] == 2 and out["burst"]["ratio_p50"] == 3.0
    # measured on one side only (--no-batch; a Plexus-only figure): no ratio
    assert out["bulk"]["plexus"] is None and out["bulk"]["ratio_p50"] is None
    assert out["restart_host_online"]["ovn"] is None
    # measured on neither side: left out
    assert "add_server" not in out and "restart_central" not in out
    assert "200 in one call" in out["bulk"]["what"]


def test_the_hosts_completion_is_read_from_nbctls_wait_time() -> None:
    assert waited_hv(PRINTED) == 13.0
    with pytest.raises(Exception, match="ovn-controller"):
        waited_hv("Time spent on processing nb_cfg 3:\n")


def controller(status: int, body: dict[str, Any]) -> AsyncClient:
    return AsyncClient(
        "http://controller",
        transport=httpx.MockTransport(lambda _: httpx.Response(status, json=body)),
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, {"error": "not_found", "reason": "Not Found"}), (405, {"detail": "Method Not Allowed"})],
)
async def test_a_controller_without_the_bulk_api_is_named_as_such(
    status: int, body: dict[str, Any]
) -> None:
    async with controller(status, body) as http:
        with pytest.raises(BatchMissing, match="no bulk API"):
            await has_batch(http)
        with pytest.raises(BatchMissing, match="--no-batch"):
            await batch(http, [OP])


async def test_a_refused_batch_is_not_a_missing_one_and_says_which_operation() -> None:
    item = {"index": 0, "error": "not_found", "reason": "no endpoint e0"}
    refused = {"error": "not_found", "reason": "1 operation refused", "items": [item]}
    async with controller(404, refused) as http:
        await has_batch(http)
        with pytest.raises(RuntimeError, match="no endpoint e0"):
            await batch(http, [OP])
    async with controller(422, {"error": "invalid", "reason": "ops: too short"}) as http:
        await has_batch(http)  # an empty batch is invalid: the route is there
