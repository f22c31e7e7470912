# One image for every Plexus process of the compose lab: the broker (Debian's
# Mosquitto, run by `plexus broker run`), the controller and the agents (which need
# iproute2's netns directory and, for issue-5 modes, nftables).
#
# BASE: any Debian bookworm with python3 (and its venv module). scripts/compose-lab
# builds one locally with debootstrap (`scripts/test-image --plexus-base`: no registry
# needed, the apt packages below already in it) and passes it:
#   docker build --network host --build-arg BASE=localhost/plexus-base:STAMP -t plexus:dev .
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# A TLS-inspecting proxy's CA certificates, when the build context has any
# (scripts/compose-lab copies the machine's /usr/local/share/ca-certificates/*.crt into
# deploy/ca-certificates/, which holds only a README otherwise): apt and pip trust them.
COPY deploy/ca-certificates/ /tmp/plexus-ca/
RUN set -e; \
    if ls /tmp/plexus-ca/*.crt >/dev/null 2>&1; then \
        mkdir -p /usr/local/share/ca-certificates; \
        cp /tmp/plexus-ca/*.crt /usr/local/share/ca-certificates/; \
        if command -v update-ca-certificates >/dev/null; then update-ca-certificates; fi; \
    fi; \
    rm -rf /tmp/plexus-ca
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt

# apt only for what the base lacks (the local base has all of it: no apt at all)
RUN pkgs="mosquitto iproute2 nftables iputils-ping procps util-linux" \
    && if ! dpkg-query -W $pkgs >/dev/null 2>&1; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# a virtualenv: Debian's own python3 refuses a system-wide pip install (PEP 668)
ENV PATH=/opt/plexus/bin:$PATH
RUN python3 -m venv /opt/plexus
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
RUN pip install --no-cache-dir --disable-pip-version-check . && rm -rf /src
COPY deploy/demo.toml /etc/plexus/demo.toml
COPY deploy/plexus.toml /etc/plexus/plexus.toml

WORKDIR /
ENTRYPOINT ["plexus"]
CMD ["--help"]
