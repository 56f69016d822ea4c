#!/bin/sh
# clusterflow-entrypoint: entry point of the clusterflow image (top-level Dockerfile).
#
# Started as root, it prepares what the app user cannot do itself, then runs the
# command as the user clusterflow:
#   - the lab state of `lab up` (.clusterflow/lab: key, known_hosts, inventory.yaml) is
#     mounted read-only at /run/clusterflow-lab and belongs to whoever ran `lab`, with
#     the key at 0600. /clusterflow/.clusterflow/lab gets a copy of the private key owned
#     by clusterflow, and symlinks to the other files, so that a later `lab up` is seen at
#     once; playbooks in /clusterflow/playbooks find the inventory at
#     ../.clusterflow/lab/inventory.yaml as in the repository. The key is copied at start
#     only: create it before (`go run ./lab images` does) or restart the container.
#   - $CLUSTERFLOW_STATE_DIR (a volume) is made the app user's.
# Started as any other user, it runs the command as it is.
set -eu

user=clusterflow
if [ "$(id -u)" != 0 ]; then
	exec "$@"
fi

src=/run/clusterflow-lab
dest=/clusterflow/.clusterflow/lab
if [ -d "$src" ]; then
	rm -rf "$dest"
	install -d -o "$user" -g "$user" -m 0700 /clusterflow/.clusterflow "$dest"
	for name in known_hosts inventory.yaml id_ed25519.pub; do
		ln -s "$src/$name" "$dest/$name"
	done
	if [ -f "$src/id_ed25519" ]; then
		install -o "$user" -g "$user" -m 0600 "$src/id_ed25519" "$dest/id_ed25519"
	else
		echo "clusterflow-entrypoint: no lab key in $src yet; restart this container after \`go run ./lab up\`" >&2
	fi
fi
if [ -n "${CLUSTERFLOW_STATE_DIR:-}" ]; then
	mkdir -p "$CLUSTERFLOW_STATE_DIR"
	chown "$user:$user" "$CLUSTERFLOW_STATE_DIR"
fi
exec setpriv --reuid="$user" --regid="$user" --init-groups --inh-caps=-all -- "$@"
