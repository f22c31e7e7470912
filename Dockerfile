# One image for every Plexus process of the compose lab: the broker (Debian's
# Mosquitto, run by `plexus broker run`), the controller and the agents (which need
# iproute2's netns directory and, for issue-5 modes, nftables).
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        mosquitto iproute2 nftables iputils-ping procps util-linux \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY controller ./controller
COPY agents ./agents
COPY broker ./broker
COPY cli ./cli
COPY lab ./lab
COPY cni ./cni
COPY dockerplugin ./dockerplugin
RUN pip install --no-cache-dir . && rm -rf /src
COPY deploy/demo.toml /etc/plexus/demo.toml
COPY deploy/plexus.toml /etc/plexus/plexus.toml

WORKDIR /
ENTRYPOINT ["plexus"]
CMD ["--help"]
