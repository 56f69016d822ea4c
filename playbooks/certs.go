package playbooks

import "time"

// Certificate limits.
const (
	// defaultMinValidity is what checkCertificates accepts without acting: 30 days.
	defaultMinValidity = 30 * 24 * time.Hour
	// minNodeCertExpiry is swarmkit's floor for node certificates (MinNodeCertExpiration).
	minNodeCertExpiry = time.Hour
	// maxCertDuration bounds minValidity and nodeCertExpiry: 10 years.
	maxCertDuration = 10 * 365 * 24 * time.Hour
)

// readRotateCA reads the fields of a rotateCA step.
func readRotateCA(f *file, m *fields, s *Step, c *stepContext) {
	r := &RotateCAStep{}
	s.RotateCA = r
	r.Manager = f.managerRef(m, c)
	if n, p := m.get("nodeCertExpiry"); n != nil {
		d, _ := f.duration(n, p, minNodeCertExpiry, maxCertDuration)
		r.NodeCertExpiry = Duration(d)
	}
	if n, p := m.get("rotateWorkerToken"); n != nil {
		r.RotateWorkerToken, _ = f.boolean(n, p)
	}
	if n, p := m.get("rotateManagerToken"); n != nil {
		r.RotateManagerToken, _ = f.boolean(n, p)
	}
	certNode, certPath := m.get("caCert")
	keyNode, keyPath := m.get("caKey")
	if certNode != nil {
		r.CACert, _ = f.localFile(certNode, certPath)
	}
	if keyNode != nil {
		r.CAKey, _ = f.localFile(keyNode, keyPath)
	}
	switch {
	case certNode != nil && keyNode == nil:
		f.errorAt(certNode, certPath, "needs caKey too: swarm signs with the new root's key (give both, or neither for a root swarm generates)")
	case keyNode != nil && certNode == nil:
		f.errorAt(keyNode, keyPath, "needs caCert too: a key alone is refused by swarm (give both, or neither for a root swarm generates)")
	}
}

// readCheckCertificates reads the fields of a checkCertificates step.
func readCheckCertificates(f *file, m *fields, s *Step, c *stepContext) {
	k := &CheckCertificatesStep{MinValidity: Duration(defaultMinValidity), Action: CertActionFail}
	s.CheckCertificates = k
	k.Manager = f.managerRef(m, c)
	if n, p := m.get("minValidity"); n != nil {
		d, _ := f.duration(n, p, time.Hour, maxCertDuration)
		k.MinValidity = Duration(d)
	}
	actionNode, actionPath := m.get("action")
	if actionNode != nil {
		if v, ok := f.str(actionNode, actionPath); ok {
			switch v {
			case CertActionFail, CertActionRotate:
				k.Action = v
			default:
				f.errorAt(actionNode, actionPath, "must be %s (the step fails, naming the nodes) or %s (a root CA rotation renews every certificate), got %s",
					CertActionFail, CertActionRotate, quote(v))
			}
		}
	}
	if n, p := m.get("nodeCertExpiry"); n != nil {
		d, ok := f.duration(n, p, minNodeCertExpiry, maxCertDuration)
		switch {
		case ok && k.Action != CertActionRotate:
			f.errorAt(n, p, "applies to the rotation only: set action: %s too, or use a rotateCA step", CertActionRotate)
		case ok && d <= k.MinValidity.Std():
			f.errorAt(n, p, "must be longer than minValidity (%s): certificates issued for %s would be below the threshold at once", shortDuration(k.MinValidity.Std()), n.Value)
		}
		k.Rotate = &RotateCAStep{NodeCertExpiry: Duration(d)}
	}
	if k.Action == CertActionRotate {
		if k.Rotate == nil {
			k.Rotate = &RotateCAStep{}
		}
		k.Rotate.Manager = k.Manager
	}
}

// managerRef reads a step's manager field: an inventory host name.
func (f *file) managerRef(m *fields, c *stepContext) string {
	n, p := m.get("manager")
	if n == nil {
		return ""
	}
	name, ok := f.nonEmptyStr(n, p)
	if !ok {
		return ""
	}
	if c.inv.byName[name] == nil && !c.inv.incomplete {
		f.errorAt(n, p, "host %s is not in the inventory (%s)", quote(name), c.inv.names())
	}
	return name
}
