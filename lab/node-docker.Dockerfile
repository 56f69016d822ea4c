# clusterflow lab node with Debian's docker.io pre-installed, engine NOT started: saves
# the apt install in tests. Built only on request (`lab images --prebaked`, `lab up
# --prebaked`). Without an init system, the package's scripts start no engine
# ("invoke-rc.d: No init system and policy-rc.d missing! Defaulting to block").
FROM clusterflow-node:bookworm

RUN set -eu; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io; \
    rm -rf /var/lib/apt/lists/*
