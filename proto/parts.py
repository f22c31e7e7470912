"""Settings models held inside wire messages and REST bodies alike: a network's or an
endpoint's DNS settings, a runtime's network namespace."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from .types import ContainerId, DnsName, DnsOption, IPv4, NetnsPath


class Dns(BaseModel):
    """The DNS settings a network gives its endpoints (HNS's ``Dns``, a CNI result's
    ``dns``): a compartment's resolver uses those of its endpoints' networks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nameservers: Annotated[tuple[IPv4, ...], Field(max_length=3)] = Field(
        (), description="resolver addresses, in order (at most 3, as resolv.conf reads)"
    )
    domain: DnsName | None = Field(None, description="the local domain")
    search: Annotated[tuple[DnsName, ...], Field(max_length=6)] = Field(
        (), description="search domains, in order"
    )
    options: Annotated[tuple[DnsOption, ...], Field(max_length=16)] = Field(
        (), description="resolver options, e.g. ndots:2"
    )


class Netns(BaseModel):
    """A network namespace a container runtime made (HNS: the compartment the runtime
    attaches endpoints to). The agent plumbs endpoints into it and never creates or
    deletes it. ``inode`` is the namespace's identity when it was handed over
    (``stat(path).st_ino``): a later namespace bound at the same path is another one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: NetnsPath = Field(description="e.g. /run/netns/cni-…, /proc/PID/ns/net")
    inode: Annotated[int, Field(ge=1, le=2**64 - 1)] = Field(
        description="the namespace's inode (stat of the path) when it was handed over"
    )
    container: ContainerId | None = Field(None, description="the runtime's container id")
