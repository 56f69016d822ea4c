package playbooks

import "slices"

// RemoveStep removes a swarm object (the teardown kinds, the Teardown workflow):
// a service, a stack (its services, then its networks, secrets and configs, once
// their tasks are gone), an overlay network, or a volume on each of the step's
// hosts. Removing what is not there is unchanged.
type RemoveStep struct {
	Op string `json:"op"` // the step kind
	// Name is the service's, stack's, network's or volume's name (the YAML field
	// is named after the kind: service, stack, network, volume).
	Name string `json:"name"`
	// Manager: as RotateCAStep.Manager (not for removeVolume, which asks each
	// host's own engine).
	Manager string `json:"manager,omitempty"`
}

// removeFields are the name field of each teardown kind.
var removeFields = map[string]string{
	KindRemoveService: "service", KindRemoveStack: "stack", KindRemoveNetwork: "network", KindRemoveVolume: "volume",
}

// readRemove reads a teardown step.
func readRemove(f *file, m *fields, s *Step, _ *stepContext) {
	r := &RemoveStep{Op: s.Kind}
	s.Remove = r
	if n, p := m.get(removeFields[s.Kind]); n != nil {
		r.Name, _ = f.nonEmptyStr(n, p)
	}
	if s.Kind != KindRemoveVolume {
		r.Manager = f.managerRef(m)
	}
}

// normalizeRemove is the Normalize of the teardown kinds: the kind is the op.
func normalizeRemove(s *Step, sc Scope) Problems {
	if s.Remove == nil {
		return Problems{{Msg: "kind " + s.Kind + " needs remove"}}
	}
	s.Remove.Op = s.Kind
	return s.Remove.Normalize(sc)
}

// Normalize checks a teardown step's settings.
func (r *RemoveStep) Normalize(sc Scope) Problems {
	var ps Problems
	field, ok := removeFields[r.Op]
	if !ok {
		ps.add("op", "must be removeService, removeStack, removeNetwork or removeVolume, got %s", quote(r.Op))
		return ps
	}
	switch {
	case r.Name == "":
		ps.add(field, "is required; the name of the %s to remove", field)
	case r.Op == KindRemoveStack:
		if err := stackNameProblem(r.Name); err != "" {
			ps.add(field, "%s", err)
		}
	case !dockerName.MatchString(r.Name):
		ps.add(field, "must be letters, digits and . _ - (at most 63), starting with a letter or digit, got %s", quote(r.Name))
	}
	if r.Op == KindRemoveVolume && r.Manager != "" {
		ps.add("manager", "removeVolume asks the engine of each of the step's hosts: it takes no manager")
	}
	sc.inventoryRef(&ps, "manager", r.Manager)
	if r.Op == KindRemoveNetwork && slices.Contains(reservedNetworks, r.Name) {
		ps.add(field, "%s is a network the engine makes itself: it cannot be removed", quote(r.Name))
	}
	return ps
}
