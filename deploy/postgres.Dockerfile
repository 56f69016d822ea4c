# PostgreSQL 15 from Debian's packages, for the team profile of docker-compose.yml (the
# database of a cluster of clusterflow servers). No registry image: it builds on
# debian:bookworm like the clusterflow image (`go run ./lab images` makes that base
# here without pulling).
#
# The data directory is a volume (/var/lib/postgresql/data). At its first start the
# entrypoint creates it with the superuser clusterflow, whose password it reads from
# /run/clusterflow-team/db-password (a file mounted from the host, never an
# environment variable or a compose key), and lets password logins (scram-sha-256) in
# from the container's own networks only.
FROM debian:bookworm

RUN set -eu; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 util-linux; \
    rm -rf /var/lib/apt/lists/* /var/lib/postgresql/15/main /etc/postgresql/15/main

COPY postgres-entrypoint.sh /usr/local/bin/clusterflow-postgres
RUN chmod 0755 /usr/local/bin/clusterflow-postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/clusterflow-postgres"]
