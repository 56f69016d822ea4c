package workflows

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/playbooks"
)

// FuzzRunPlaybookInput feeds arbitrary JSON to the check a RunPlaybook input's
// plan gets (checkPlan, what the workflow runs before anything else). It must
// never panic, and a plan it accepts must hold only what a parsed playbook could:
// addresses that are addresses, worker paths that are absolute and clean, a
// known host key policy, a jump host that is the inventory's own, and steps
// whose hosts are in the inventory.
func FuzzRunPlaybookInput(f *testing.F) {
	good := `{"plan":{"name":"p","hosts":[{"name":"h1","address":"127.0.0.2","port":22,"user":"root","identityFile":"/k/id","knownHostsFile":"/k/known_hosts","hostKeyPolicy":"strict"}],` +
		`"steps":[{"name":"s","kind":"run","hosts":["h1"],"parallel":1,"maxFailPercent":0,"timeout":"30s","attempts":1,"run":{"command":["true"]}}]}}`
	for _, seed := range []string{
		good,
		`{"plan":{"name":"p","hosts":[{"name":"h1","address":"*","port":22,"user":"root","identityFile":"/k/id","knownHostsFile":"/root/.ssh/authorized_keys2","hostKeyPolicy":"tofu"}],"steps":[]}}`,
		`{"plan":{"name":"p","hosts":[{"name":"h1","address":"127.0.0.2\n@cert-authority *","port":22,"user":"root","knownHostsFile":"x","hostKeyPolicy":"off","jump":"h1"}]}}`,
		`{"plan":{"name":"p","hosts":[{"name":"b","address":"10.0.0.1","port":22,"user":"root","useAgent":true,"knownHostsFile":"/k","hostKeyPolicy":"strict"},` +
			`{"name":"h","address":"h.internal","port":22,"user":"root","useAgent":true,"knownHostsFile":"/k","hostKeyPolicy":"strict","jump":"b","via":{"name":"b","address":"*"}}],` +
			`"steps":[{"name":"s","kind":"upload","hosts":["h"],"parallel":1,"timeout":"1m","attempts":1,"upload":{"src":"/etc/shadow","dest":"/tmp/x","mode":420}}]}}`,
		`{"playbook":"../x"}`, `{}`, `{"plan":null}`, `[]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var in RunPlaybookInput
		if json.Unmarshal(data, &in) != nil || in.Plan == nil {
			return
		}
		p := in.Plan
		if checkPlan(p) != nil {
			return
		}
		names := make([]string, len(p.Hosts))
		for i, h := range p.Hosts {
			names[i] = h.Name
		}
		for _, h := range p.Hosts {
			checkHost(t, h)
			if h.Jump == "" {
				if h.Via != nil {
					t.Fatalf("host %q has no jump but a via", h.Name)
				}
				continue
			}
			j := slices.Index(names, h.Jump)
			if j < 0 || h.Via == nil || h.Via.Address != p.Hosts[j].Address || h.Via.KnownHostsFile != p.Hosts[j].KnownHostsFile {
				t.Fatalf("host %q: via is not the inventory's %q: %+v", h.Name, h.Jump, h.Via)
			}
			checkHost(t, *h.Via)
		}
		for _, s := range p.Steps {
			for _, h := range s.Hosts {
				if !slices.Contains(names, h) {
					t.Fatalf("step %q names host %q, not in the inventory", s.Name, h)
				}
			}
		}
	})
}

func checkHost(t *testing.T, h playbooks.Host) {
	t.Helper()
	switch {
	case !rules.HostAddress(h.Address):
		t.Fatalf("accepted address %q", h.Address)
	case !rules.UserName(h.User):
		t.Fatalf("accepted user %q", h.User)
	case !rules.WorkerPath(h.KnownHostsFile):
		t.Fatalf("accepted knownHostsFile %q", h.KnownHostsFile)
	case h.IdentityFile != "" && !rules.WorkerPath(h.IdentityFile):
		t.Fatalf("accepted identityFile %q", h.IdentityFile)
	case h.HostKeyPolicy != playbooks.HostKeyStrict && h.HostKeyPolicy != playbooks.HostKeyTOFU:
		t.Fatalf("accepted hostKeyPolicy %q", h.HostKeyPolicy)
	case h.Port < 1 || h.Port > 65535:
		t.Fatalf("accepted port %d", h.Port)
	}
}
