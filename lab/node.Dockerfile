# clusterflow lab node: a Debian bookworm host reached over SSH (key-only root login)
# that can later install and run its own Docker engine. Built by `go run ./lab images`
# (or `docker-compose build`) with this folder's node/ directory as build context input.
#
# No host keys, passwords or authorized keys are baked in: every node generates its own
# ed25519 host key at first boot, and `lab up` installs the lab key with docker exec.
FROM debian:bookworm

# Packages a node needs now (SSH, SFTP, networking tools) and those a Docker engine
# installed later needs from the base system (iptables, procps, ca-certificates).
# A base image made by `lab images` (debootstrap) already holds them: then no
# package index is fetched at all.
ARG NODE_PACKAGES="openssh-server openssh-sftp-server iproute2 iputils-ping procps ca-certificates sudo iptables less"
RUN set -eu; \
    missing=""; \
    for p in $NODE_PACKAGES; do \
        dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing="$missing $p"; \
    done; \
    if [ -n "$missing" ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    rm -f /etc/ssh/ssh_host_*; \
    passwd -l root >/dev/null; \
    sed -i -E 's/^session[[:space:]]+required[[:space:]]+pam_loginuid\.so/session optional pam_loginuid.so/' /etc/pam.d/sshd; \
    install -d -m 0700 /root/.ssh; \
    install -d -m 0755 /etc/clusterflow/services.d /var/log/clusterflow; \
    : > /etc/machine-id

COPY node/sshd_config /etc/ssh/sshd_config
COPY node/init.sh /usr/local/sbin/clusterflow-node-init
COPY node/clusterflow-service /usr/local/sbin/clusterflow-service
RUN chmod 0644 /etc/ssh/sshd_config \
 && chmod 0755 /usr/local/sbin/clusterflow-node-init /usr/local/sbin/clusterflow-service

EXPOSE 22
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/sbin/clusterflow-node-init"]
