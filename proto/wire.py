"""The base of every wire message, and the field helpers the messages share."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION: Literal[1] = 1


class Wire(BaseModel):
    """Base of every message: frozen, unknown fields rejected, no coercion."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[1] = SCHEMA_VERSION


def unset(value: object) -> bool:
    """``exclude_if`` of a field left out while None."""
    return value is None


def empty(value: object) -> bool:
    """``exclude_if`` of a field left out while empty."""
    return not value
