package playbooks

import (
	"os"
	"path/filepath"
	"testing"
)

func TestProcedureSteps(t *testing.T) {
	dir := t.TempDir()
	debs := filepath.Join(dir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(debs, "docker.io_1_amd64.deb"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	text := `apiVersion: clusterflow.io/v1
kind: Playbook
metadata: {name: bootstrap}
spec:
  inventory:
    defaults: {user: root, identityFile: key}
    hosts:
      - {name: a, address: 192.168.56.101}
      - {name: b, address: 192.168.56.102}
  steps:
    - name: keys
      kind: distributeKeys
      hosts: all
      clusterKey: keys/cluster_ed25519
      mesh: true
    - name: docker
      kind: installDocker
      hosts: all
    - name: docker offline
      kind: installDocker
      hosts: b
      source: offline
      packages: debs
      version: 20.10.24+dfsg1-1+deb12u1
      daemonConfig: {log-driver: json-file, log-opts: {max-size: 10m}}
      users: [deploy]
`
	plan, err := Parse(filepath.Join(dir, "p.yaml"), []byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	k := plan.Steps[0].DistributeKeys
	if k == nil || k.ClusterKey != filepath.Join(dir, "keys/cluster_ed25519") || !k.Mesh || k.Rotate {
		t.Fatalf("distributeKeys: %+v", k)
	}
	if d := plan.Steps[1].InstallDocker; d == nil || d.Source != DockerFromDistro || d.Packages != "" {
		t.Fatalf("installDocker defaults: %+v", d)
	}
	d := plan.Steps[2].InstallDocker
	if d.Source != DockerFromOffline || d.Packages != debs || d.Version != "20.10.24+dfsg1-1+deb12u1" ||
		d.DaemonConfig["log-driver"] != "json-file" || len(d.Users) != 1 {
		t.Fatalf("installDocker offline: %+v", d)
	}
	if opts, ok := d.DaemonConfig["log-opts"].(map[string]any); !ok || opts["max-size"] != "10m" {
		t.Fatalf("nested daemonConfig: %#v", d.DaemonConfig["log-opts"])
	}
}
