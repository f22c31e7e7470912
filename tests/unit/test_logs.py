"""Every line a daemon logs is one record of the same shape (:mod:`proto.logs`): its
own structlog events and the standard library records of the libraries it runs
(aiomqtt as ``mqtt``, uvicorn, asyncio), which came out as bare text lines before. Run in a child
process: the set-up is the process's own (structlog's and the root logger's)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

EMIT = textwrap.dedent(
    """
    import logging, structlog
    from proto import logs
    logs.configure("info", "json")
    logging.getLogger("mqtt").warning("There are %d pending publish calls.", 12)
    try:
        1 / 0
    except ZeroDivisionError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    logging.getLogger("asyncio").debug("below the level")
    structlog.get_logger("plexus.test").info("own_event", answer=42)
    """
)


def test_library_records_are_json_records_like_the_daemons_own() -> None:
    run = subprocess.run(
        [sys.executable, "-c", EMIT], capture_output=True, text=True, timeout=60, check=True
    )
    records = [json.loads(line) for line in run.stderr.splitlines()]
    assert [(r["event"], r["level"], r.get("logger")) for r in records] == [
        ("There are 12 pending publish calls.", "warning", "mqtt"),
        ("Exception in ASGI application", "error", "uvicorn.error"),
        ("own_event", "info", None),
    ]
    assert all(r["timestamp"].endswith("Z") for r in records)
    assert "ZeroDivisionError: division by zero" in records[1]["exception"]
    assert records[2]["answer"] == 42
