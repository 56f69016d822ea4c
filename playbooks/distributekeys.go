package playbooks

import (
	"path/filepath"

	"github.com/clusterflow/clusterflow/internal/rules"
)

// defaultClusterKey is where DistributeKeys keeps the operator's cluster key when the
// step does not say: on the machine that resolves the playbook, readable by the worker.
const defaultClusterKey = "~/.ssh/clusterflow_ed25519"

// readDistributeKeys reads the fields of a distributeKeys step.
func readDistributeKeys(f *file, m *fields, s *Step, _ *stepContext) {
	d := &DistributeKeysStep{}
	s.DistributeKeys = d
	d.ClusterKey = f.localPathOr(m, "clusterKey", defaultClusterKey)
	if n, p := m.get("user"); n != nil {
		d.User, _ = f.str(n, p)
	}
	if n, p := m.get("mesh"); n != nil {
		d.Mesh, _ = f.boolean(n, p)
	}
	if n, p := m.get("rotate"); n != nil {
		d.Rotate, _ = f.boolean(n, p)
	}
}

// Normalize checks a distributeKeys step's settings.
func (d *DistributeKeysStep) Normalize(Scope) Problems {
	var ps Problems
	switch k := d.ClusterKey; {
	case k == "":
		ps.add("clusterKey", "is required: the absolute path of the cluster private key on the worker, such as /var/lib/clusterflow/cluster_key")
	case !filepath.IsAbs(k) || filepath.Clean(k) != k:
		ps.add("clusterKey", "must be a clean absolute path on the worker, got %s", quote(k))
	case rules.ClusterKeyCompanion(k):
		ps.add("clusterKey", "%s names a companion file of the cluster key (%s, %s, %s); give the cluster private key's path",
			quote(k), rules.PublicKeySuffix, rules.NextKeySuffix, rules.OldKeySuffix)
	}
	if d.User != "" {
		ps.userName("user", d.User)
	}
	return ps
}
