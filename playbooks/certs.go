package playbooks

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Certificate limits.
const (
	// defaultMinValidity is what checkCertificates accepts without acting: 30 days.
	defaultMinValidity = 30 * 24 * time.Hour
	// minNodeCertExpiry is swarmkit's floor for node certificates (MinNodeCertExpiration).
	minNodeCertExpiry = time.Hour
	// minMinValidity is the least minValidity: below an hour the check says nothing.
	minMinValidity = time.Hour
	// maxCertDuration bounds minValidity and nodeCertExpiry: 10 years.
	maxCertDuration = 10 * 365 * 24 * time.Hour
)

// readRotateCA reads the fields of a rotateCA step.
func readRotateCA(f *file, m *fields, s *Step, _ *stepContext) {
	r := &RotateCAStep{}
	s.RotateCA = r
	r.Manager = f.managerRef(m)
	if n, p := m.get("nodeCertExpiry"); n != nil {
		r.NodeCertExpiry = f.nonZeroDuration(n, p, "leave it out to keep the swarm's setting")
	}
	if n, p := m.get("rotateWorkerToken"); n != nil {
		r.RotateWorkerToken, _ = f.boolean(n, p)
	}
	if n, p := m.get("rotateManagerToken"); n != nil {
		r.RotateManagerToken, _ = f.boolean(n, p)
	}
	if n, p := m.get("caCert"); n != nil {
		r.CACert, _ = f.localFile(n, p)
	}
	if n, p := m.get("caKey"); n != nil {
		r.CAKey, _ = f.localFile(n, p)
	}
}

// Normalize checks a rotateCA step's settings. NodeCertExpiry 0 leaves the swarm's
// setting as it is.
func (r *RotateCAStep) Normalize(sc Scope) Problems {
	var ps Problems
	sc.inventoryRef(&ps, "manager", r.Manager)
	return append(ps, r.rotation()...)
}

// rotation checks what a rotation is started with: the certificates' validity and an
// operator's root CA.
func (r *RotateCAStep) rotation() Problems {
	var ps Problems
	if r.NodeCertExpiry != 0 {
		ps.durationRange("nodeCertExpiry", r.NodeCertExpiry, minNodeCertExpiry, maxCertDuration)
	}
	switch {
	case r.CACert != "" && r.CAKey == "":
		ps.add("caCert", "needs caKey too: swarm signs with the new root's key (give both, or neither for a root swarm generates)")
	case r.CAKey != "" && r.CACert == "":
		ps.add("caKey", "needs caCert too: a key alone is refused by swarm (give both, or neither for a root swarm generates)")
	}
	ps.workerPath("caCert", r.CACert)
	ps.workerPath("caKey", r.CAKey)
	return ps
}

// readCheckCertificates reads the fields of a checkCertificates step.
func readCheckCertificates(f *file, m *fields, s *Step, _ *stepContext) {
	k := &CheckCertificatesStep{MinValidity: Duration(defaultMinValidity), Action: CertActionFail}
	s.CheckCertificates = k
	k.Manager = f.managerRef(m)
	if n, p := m.get("minValidity"); n != nil {
		k.MinValidity = f.nonZeroDuration(n, p, "leave it out for the default 720h")
	}
	if n, p := m.get("action"); n != nil {
		k.Action, _ = f.str(n, p)
	}
	if n, p := m.get("nodeCertExpiry"); n != nil {
		k.Rotate = &RotateCAStep{NodeCertExpiry: f.nonZeroDuration(n, p, "leave it out to keep the swarm's setting")}
	}
}

// Normalize applies a checkCertificates step's defaults (minValidity 720h, action
// fail; with action rotate, the rotation through the same manager) and checks its
// settings.
func (k *CheckCertificatesStep) Normalize(sc Scope) Problems {
	var ps Problems
	sc.inventoryRef(&ps, "manager", k.Manager)
	if k.MinValidity == 0 {
		k.MinValidity = Duration(defaultMinValidity)
	}
	ps.durationRange("minValidity", k.MinValidity, minMinValidity, maxCertDuration)
	if k.Action == "" {
		k.Action = CertActionFail
	}
	switch k.Action {
	case CertActionFail, CertActionRotate:
	default:
		ps.add("action", "must be %s (the step fails, naming the nodes) or %s (a root CA rotation renews every certificate), got %s",
			CertActionFail, CertActionRotate, quote(k.Action))
	}
	if k.Rotate == nil && k.Action == CertActionRotate {
		k.Rotate = &RotateCAStep{}
	}
	switch {
	case k.Rotate == nil:
	case k.Action != CertActionRotate && k.Rotate.NodeCertExpiry != 0:
		ps.add("nodeCertExpiry", "applies to the rotation only: set action: %s too, or use a rotateCA step", CertActionRotate)
	default:
		rot := k.Rotate.rotation()
		ps = append(ps, rot...)
		if d := k.Rotate.NodeCertExpiry; len(rot) == 0 && d != 0 && d <= k.MinValidity {
			ps.add("nodeCertExpiry", "must be longer than minValidity (%s): certificates issued for %s would be below the threshold at once",
				shortDuration(k.MinValidity.Std()), shortDuration(d.Std()))
		}
		if k.Rotate.Manager == "" {
			k.Rotate.Manager = k.Manager
		}
	}
	return ps
}

// managerRef reads a step's manager field: the name of an inventory host, which
// Normalize checks.
func (f *file) managerRef(m *fields) string {
	n, p := m.get("manager")
	if n == nil {
		return ""
	}
	name, _ := f.nonEmptyStr(n, p)
	return name
}

// nonZeroDuration reads a duration that may not be 0: 0 is what the field's absence
// means (hint says so).
func (f *file) nonZeroDuration(n *yaml.Node, path, hint string) Duration {
	d, ok := f.anyDuration(n, path)
	if ok && d == 0 {
		f.errorAt(n, path, "must not be 0; %s", hint)
	}
	return Duration(d)
}
