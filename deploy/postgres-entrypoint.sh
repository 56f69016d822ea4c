#!/bin/sh
# clusterflow-postgres: entry point of deploy/postgres.Dockerfile. Started as root:
# creates the data directory at the first start (superuser clusterflow, password from
# $CLUSTERFLOW_DB_PASSWORD_FILE, password logins from the container's networks only),
# then runs PostgreSQL as the postgres account.
#
# Environment (defaults for the container):
#   PGDATA                         /var/lib/postgresql/data
#   CLUSTERFLOW_DB_PASSWORD_FILE   /run/clusterflow-team/db-password
#   CLUSTERFLOW_PG_LISTEN          * (listen_addresses)
#   CLUSTERFLOW_PG_PORT            5432
#   CLUSTERFLOW_PG_MAX_CONNECTIONS 200 (two servers at max_conns=5 take up to 80)
set -eu

bin=/usr/lib/postgresql/15/bin
data=${PGDATA:-/var/lib/postgresql/data}
pwfile=${CLUSTERFLOW_DB_PASSWORD_FILE:-/run/clusterflow-team/db-password}
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

if [ ! -s "$data/PG_VERSION" ]; then
	if [ ! -s "$pwfile" ]; then
		echo "clusterflow-postgres: no password in $pwfile; write one there first (README, \"A team deployment\")" >&2
		exit 1
	fi
	install -d -o postgres -g postgres -m 0700 "$data"
	# initdb reads the password as postgres: a private copy, removed at once.
	tmp=$(mktemp)
	cat "$pwfile" >"$tmp"
	chown postgres "$tmp"
	as_postgres "$bin/initdb" -D "$data" -U clusterflow --pwfile="$tmp" \
		--auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
	rm -f "$tmp"
	cat >>"$data/postgresql.conf" <<CONF
# clusterflow-postgres
listen_addresses = '${CLUSTERFLOW_PG_LISTEN:-*}'
port = ${CLUSTERFLOW_PG_PORT:-5432}
max_connections = ${CLUSTERFLOW_PG_MAX_CONNECTIONS:-200}
unix_socket_directories = '$data'
CONF
	# The container's own networks, nothing else; no trust anywhere.
	echo "host all clusterflow samenet scram-sha-256" >>"$data/pg_hba.conf"
	echo "clusterflow-postgres: created $data" >&2
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$bin/postgres" -D "$data"
