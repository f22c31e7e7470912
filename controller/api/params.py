"""Query parameters shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

Wait = Annotated[bool, Query(description="return once every affected online host applied it")]
Timeout = Annotated[float, Query(gt=0, le=300, description="seconds to wait with wait=true")]
Force = Annotated[bool, Query(description="also delete what still depends on it")]
WaitFor = Annotated[
    list[str] | None,
    Query(description="with wait=true, wait only for these hosts (e.g. a CNI ADD: its own)"),
]
