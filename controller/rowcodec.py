"""Rows and deltas as the stores hold them: one JSON text per row (a network's spec
encoded once while it is unchanged), and a :class:`~controller.state.Delta` as one JSON
text in the change log of a shared store (:mod:`controller.pgstore`)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic import BaseModel

from proto import NetworkSpec
from proto.parts import Dns, Netns
from proto.policy import Policy

from .errors import StoreError
from .state import TABLE_OF, Delta, NetworkRow, PolicyRow, Row, Table

ROW_TYPES: dict[Table, type[Row]] = {t: cls for cls, t in TABLE_OF.items()}

#: each row type's fields, for a shallow dict of a row (its values are JSON already:
#: strings, numbers, tuples, flat dicts; ``dataclasses.asdict`` deep-copies them)
_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in TABLE_OF}


def encode(row: Row, spec: str | None = None) -> str:
    """A row as stored; a network's spec as ``spec`` (its JSON) when the caller has it."""
    if isinstance(row, NetworkRow):
        if spec is None:
            spec = spec_json(row.spec)
        rest: dict[str, Any] = {"table_gen": row.table_gen, "created": row.created}
        if row.hosts:
            rest["hosts"] = list(row.hosts)
        tail = json.dumps(rest)[1:]
        return f'{{"spec":{spec},{tail}'
    if isinstance(row, PolicyRow):
        policy = row.spec.model_dump(mode="json", exclude={"v", "kind"})
        return json.dumps({"spec": policy, "created": row.created}, separators=(",", ":"))
    values = {f: getattr(row, f) for f in _FIELDS[type(row)]}
    return json.dumps(values, separators=(",", ":"), default=_model)


def _model(value: object) -> object:
    """A model in a row (an endpoint's DNS settings) as JSON."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON")


def spec_json(spec: NetworkSpec) -> str:
    return json.dumps(spec.model_dump(mode="json", exclude={"v", "kind"}), separators=(",", ":"))


def decode(table: Table, data: str) -> Row:
    """A stored row; StoreError when it no longer reads (a row a later validator
    refuses, a file edited by hand): one line naming it, not a traceback."""
    try:
        return _decode_row(table, json.loads(data))
    except (ValueError, KeyError, TypeError) as e:  # pydantic's ValidationError too
        raise StoreError(f"a stored {table} row does not read: {str(e)[:300]}") from None


def _decode_row(table: Table, values: dict[str, Any]) -> Row:
    if table == "networks":
        return _network(values)
    if table == "policies":
        spec = Policy.model_validate(values["spec"], strict=False)
        return PolicyRow(spec, created=values.get("created", 0.0))
    for key in ("errors", "labels"):
        if key in values:
            values[key] = tuple(values[key])
    if "ports" in values:
        values["ports"] = tuple(tuple(p) for p in values["ports"])
    if values.get("dns") is not None:
        values["dns"] = Dns.model_validate(values["dns"])
    if values.get("netns") is not None:
        values["netns"] = Netns.model_validate(values["netns"])
    return ROW_TYPES[table](**values)


def _network(values: dict[str, Any]) -> NetworkRow:
    """A network row: ``{"spec": …, "table_gen": …, "created": …}``, or as stores
    written before the spec was held whole wrote it (its fields flat, beside those)."""
    if "spec" in values:
        spec = values["spec"]
    else:
        spec = {k: v for k, v in values.items() if k not in ("table_gen", "created", "hosts")}
    return NetworkRow(
        NetworkSpec.model_validate(spec, strict=False),
        table_gen=values["table_gen"],
        created=values.get("created", 0.0),
        hosts=tuple(values.get("hosts", ())),
    )


def encode_delta(puts: list[tuple[Table, str]], delta: Delta) -> str:
    """A delta for the change log, its rows as the row tables got them (``puts``)."""
    return json.dumps(
        {"puts": puts, "deletes": delta.deletes, "floors": delta.floors}, separators=(",", ":")
    )


def decode_delta(text: str) -> Delta:
    """A delta of the change log; StoreError when it does not read."""
    try:
        values = json.loads(text)
        deletes: list[tuple[Table, str]] = [(t, i) for t, i in values["deletes"]]
        return Delta(
            puts=[decode(t, data) for t, data in values["puts"]],
            deletes=deletes,
            floors={str(k): int(v) for k, v in values["floors"].items()},
        )
    except StoreError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError(f"a logged change does not read: {str(e)[:300]}") from None
