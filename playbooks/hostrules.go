package playbooks

import (
	"fmt"
	"slices"

	"github.com/clusterflow/clusterflow/internal/rules"
)

// The rules of an inventory host, for a plan that did not come from the parser (a
// JSON input): the same rules the inventory reader applies to a YAML host, with the
// same functions (namePattern, addressProblem, the rules package), so that a plan
// sent by hand can hold nothing a playbook could not. The remote layer checks the
// address and paths again before it dials (remote.Host.Validate).

// normalizeHosts checks the plan's hosts and rebuilds each Via from the inventory:
// a jump host is always the inventory's own, never a second description of it that
// the input could make differ.
func (p *Plan) normalizeHosts() error {
	if len(p.Hosts) == 0 {
		return fmt.Errorf("plan.hosts: is empty; a plan needs the hosts its steps run on")
	}
	byName := make(map[string]int, len(p.Hosts))
	for i := range p.Hosts {
		h := &p.Hosts[i]
		where := fmt.Sprintf("plan.hosts[%d]", i)
		if err := h.problems().Err(where); err != nil {
			return err
		}
		if first, dup := byName[h.Name]; dup {
			return fmt.Errorf("%s.name: duplicate host name %s (first at plan.hosts[%d])", where, quote(h.Name), first)
		}
		byName[h.Name] = i
	}
	for i := range p.Hosts {
		h := &p.Hosts[i]
		if h.Jump == "" {
			h.Via = nil
			continue
		}
		where := fmt.Sprintf("plan.hosts[%d].jump", i)
		j, ok := byName[h.Jump]
		switch {
		case h.Jump == h.Name:
			return fmt.Errorf("%s: a host cannot jump through itself", where)
		case !ok:
			return fmt.Errorf("%s: jump host %s is not in the inventory", where, quote(h.Jump))
		case p.Hosts[j].Jump != "":
			return fmt.Errorf("%s: jump host %s has a jump of its own; only one level of jump is supported", where, quote(h.Jump))
		}
		via := p.Hosts[j]
		via.Groups = slices.Clone(via.Groups)
		via.Via = nil
		h.Via = &via
	}
	return nil
}

// problems checks one host's fields.
func (h *Host) problems() Problems {
	var ps Problems
	switch {
	case h.Name == "":
		ps.add("name", "is required (%s)", nameRule)
	case !namePattern.MatchString(h.Name) || h.Name == "all":
		ps.add("name", "must be %s, and not \"all\"; got %s", nameRule, quote(h.Name))
	}
	if why := addressProblem(h.Address); why != "" {
		ps.add("address", "%s", why)
	} else if !rules.HostAddress(h.Address) {
		ps.add("address", "must be %s; got %s", rules.HostAddressRule, quote(h.Address))
	}
	ps.intRange("port", h.Port, 1, 65535)
	if !rules.UserName(h.User) {
		ps.add("user", "must be a user name (%s); got %s", rules.UserNameRule, quote(h.User))
	}
	if h.IdentityFile == "" && !h.UseAgent {
		ps.add("identityFile", "is required: the host has no SSH credentials; set identityFile or useAgent")
	}
	if h.IdentityFile != "" && !rules.WorkerPath(h.IdentityFile) {
		ps.add("identityFile", "must be %s on the worker; got %s", rules.WorkerPathRule, quote(h.IdentityFile))
	}
	if !rules.WorkerPath(h.KnownHostsFile) {
		ps.add("knownHostsFile", "must be %s on the worker; got %s", rules.WorkerPathRule, quote(h.KnownHostsFile))
	}
	if h.HostKeyPolicy != HostKeyStrict && h.HostKeyPolicy != HostKeyTOFU {
		ps.add("hostKeyPolicy", "must be %s or %s; got %s", quote(HostKeyStrict), quote(HostKeyTOFU), quote(h.HostKeyPolicy))
	}
	seen := map[string]bool{}
	for gi, g := range h.Groups {
		switch {
		case !namePattern.MatchString(g):
			ps.add(fmt.Sprintf("groups[%d]", gi), "must be %s; got %s", nameRule, quote(g))
		case seen[g]:
			ps.add(fmt.Sprintf("groups[%d]", gi), "group %s is listed twice", quote(g))
		}
		seen[g] = true
	}
	return ps
}
