# clusterflow image: the worker (Temporal worker, or with `worker server` the embedded
# Temporal server and its Web UI) and the starter, on Debian bookworm.
#
# The binaries are built beforehand on the host (`make build` writes bin/worker and
# bin/starter; Go binaries from a bookworm machine run here as they are):
#   make build && docker build -t clusterflow:dev .
# docker-compose.yml builds it the same way. Processes run as the user clusterflow
# (uid 10001); lab/image/entrypoint.sh drops to it after copying the mounted lab state.
FROM debian:bookworm

# openssh-client: ssh-keygen and ssh for troubleshooting. A base image made by `lab
# images` (debootstrap) has these packages already: then nothing is fetched.
RUN set -eu; \
    missing=""; \
    for p in openssh-client ca-certificates; do \
        dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing="$missing $p"; \
    done; \
    if [ -n "$missing" ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --system --gid 10001 clusterflow; \
    useradd --system --uid 10001 --gid clusterflow --home-dir /var/lib/clusterflow \
        --shell /usr/sbin/nologin clusterflow; \
    install -d -o clusterflow -g clusterflow -m 0750 /var/lib/clusterflow; \
    install -d -m 0755 /clusterflow /clusterflow/playbooks

COPY bin/worker bin/starter /usr/local/bin/
COPY lab/image/entrypoint.sh /usr/local/bin/clusterflow-entrypoint
RUN chmod 0755 /usr/local/bin/worker /usr/local/bin/starter /usr/local/bin/clusterflow-entrypoint

# The file policy (README, Security): playbooks may read and write the lab state the
# entrypoint lays out in /clusterflow/.clusterflow, and read the lab files its links
# lead to in /run/clusterflow-lab.
ENV CLUSTERFLOW_STATE_DIR=/var/lib/clusterflow \
    CLUSTERFLOW_PLAYBOOK_DIR=/clusterflow/playbooks \
    CLUSTERFLOW_ALLOW_PATHS=/clusterflow/.clusterflow \
    CLUSTERFLOW_ALLOW_READ=/run/clusterflow-lab
WORKDIR /clusterflow
# Temporal frontend (gRPC) and Web UI of `worker server`.
EXPOSE 7233 8233
ENTRYPOINT ["/usr/local/bin/clusterflow-entrypoint"]
CMD ["worker"]
