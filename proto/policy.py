"""ACL policies (README, "Policies"): the model, defined once for the wire, the REST
API, the CLI and the topology file.

A policy is attached to a network and selects some of its endpoints (by id, by labels,
or all of them). Its rules match a direction seen from the selected endpoint (``in``:
to it, ``out``: from it), a protocol, the endpoint's own ports, the other side's
addresses (prefixes, or a label selector resolved to the addresses of the network's
endpoints that match it) and ports. Tiers are evaluated in ascending order; in a tier,
among the rules of every policy of that tier that selects the endpoint, the highest
priority match decides (at one priority, block before allow before pass): ``allow``
admits the flow, ``block`` drops it, ``pass`` hands it to the next tier. A tier that
selects the endpoint in that direction and has no matching rule drops the flow. An
endpoint no policy selects in a direction is open in that direction (as today); a flow
every selecting tier passed is admitted. Replies of an admitted connection are admitted
(stateful). A flow between two endpoints must be admitted by both: ``out`` at its
source, ``in`` at its destination.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from .types import Cidr, Generation, Id

#: ``key=value``: a key (letters, digits, ``._/-``) and a value (possibly empty)
Label = Annotated[
    str,
    StringConstraints(
        max_length=128, pattern=r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,62})=[A-Za-z0-9._-]{0,63}$"
    ),
]
Labels = Annotated[tuple[Label, ...], Field(max_length=64)]
MAX_RULES = 4096
MAX_PRIORITY = 32767


def _port_range(value: str) -> str:
    lo, _, hi = value.partition("-")
    first, last = int(lo), int(hi or lo)
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"port range {value!r}: expected N or N-M with 1 <= N <= M <= 65535")
    return f"{first}-{last}" if last != first else str(first)


PortRange = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{1,5}(-[0-9]{1,5})?$"), AfterValidator(_port_range)
]
PortRanges = Annotated[tuple[PortRange, ...], Field(max_length=64)]


def label_map(labels: tuple[str, ...]) -> dict[str, str]:
    """``("app=web", "tier=1")`` → ``{"app": "web", "tier": "1"}`` (the last of a key wins)."""
    return dict(lab.split("=", 1) for lab in labels)


def selects(selector: tuple[str, ...], labels: tuple[str, ...]) -> bool:
    """Every ``key=value`` of ``selector`` is one of ``labels`` (an empty one: all)."""
    have = label_map(labels)
    return all(have.get(k) == v for k, v in label_map(selector).items())


class AclRule(BaseModel):
    """One rule of a policy (HNS's ``AclPolicySetting``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    priority: Annotated[int, Field(ge=0, le=MAX_PRIORITY)] = Field(
        description="within a tier the highest priority match decides"
    )
    direction: Literal["in", "out"] = Field(description="in: to the endpoint; out: from it")
    action: Literal["allow", "block", "pass"] = Field(
        description="allow, block, or pass to the next tier"
    )
    protocol: Literal["any", "tcp", "udp", "icmp"] = "any"
    local_ports: PortRanges = Field((), description="the endpoint's ports (tcp, udp)")
    remote_addresses: Annotated[tuple[Cidr, ...], Field(max_length=256)] = Field(
        (), description="the other side's prefixes"
    )
    remote_selector: Labels | None = Field(
        None, description="the other side: the network's endpoints with these labels"
    )
    remote_ports: PortRanges = Field((), description="the other side's ports (tcp, udp)")
    log: bool = Field(False, description="log each match (nflog group, prefix policy:rule)")

    @model_validator(mode="after")
    def _consistent(self) -> AclRule:
        if (self.local_ports or self.remote_ports) and self.protocol not in ("tcp", "udp"):
            raise ValueError(f"rule {self.name}: ports need protocol tcp or udp")
        return self

    @property
    def name(self) -> str:
        """The rule's name in its policy: direction and priority (unique there)."""
        return f"{self.direction}-{self.priority}"


class PolicyFields(BaseModel):
    """A policy's settings (the REST body, the topology file, the wire's :class:`Policy`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Id
    network: Id = Field(description="the network whose endpoints it selects")
    tier: Annotated[int, Field(ge=0, le=65535)] = Field(
        100, description="tiers are evaluated in ascending order"
    )
    selector: Labels | None = Field(
        None, description="the endpoints with all these labels (with `endpoints`: either)"
    )
    endpoints: Annotated[tuple[Id, ...], Field(max_length=4096)] = Field(
        (), description="endpoints selected by id; neither this nor a selector: all"
    )
    rules: Annotated[tuple[AclRule, ...], Field(max_length=MAX_RULES)] = ()

    @model_validator(mode="after")
    def _priorities(self) -> PolicyFields:
        seen: dict[str, int] = {}
        for i, r in enumerate(self.rules):
            if r.name in seen:
                raise ValueError(
                    f"rules {seen[r.name]} and {i} share priority {r.priority} in direction "
                    f"{r.direction}: give each rule of a direction its own priority"
                )
            seen[r.name] = i
        return self

    def selects(self, endpoint: str, labels: tuple[str, ...]) -> bool:
        if self.selector is None and not self.endpoints:
            return True
        return endpoint in self.endpoints or (
            self.selector is not None and selects(self.selector, labels)
        )


class Policy(PolicyFields):
    """A policy as hosts receive it (in their desired document), at a generation."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[1] = 1
    kind: Literal["policy"] = "policy"
    generation: Generation = 1
