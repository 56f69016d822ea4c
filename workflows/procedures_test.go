package workflows

import (
	"slices"
	"testing"

	"github.com/clusterflow/clusterflow/playbooks"
)

// TestEveryStepKindRuns: every step kind of the playbook format is run by RunPlaybook
// itself (run, upload) or by exactly one procedure of the table, every kind the
// table names exists, and every name is registered once.
func TestEveryStepKindRuns(t *testing.T) {
	kinds := playbooks.Kinds()
	for _, k := range kinds {
		n := 0
		for _, p := range procedures {
			if slices.Contains(p.kinds, k) {
				n++
			}
		}
		switch {
		case k == playbooks.KindRun || k == playbooks.KindUpload:
			if n != 0 {
				t.Errorf("kind %s is RunPlaybook's own, but %d procedures name it", k, n)
			}
		case n != 1:
			t.Errorf("kind %s is run by %d procedures, want 1", k, n)
		}
	}
	for _, p := range procedures {
		for _, k := range p.kinds {
			if !slices.Contains(kinds, k) {
				t.Errorf("procedure %s names kind %q, which the playbook format does not have", p.name, k)
			}
		}
	}
	seen := map[string]bool{}
	for _, name := range registeredNames {
		if seen[name] {
			t.Errorf("%s is registered twice", name)
		}
		seen[name] = true
	}
	if len(registeredNames) != 14 {
		t.Errorf("%d registered workflows, want the 14 whose histories are kept", len(registeredNames))
	}
}

// TestPlanCheckNamesTheStep: a hand-written plan meets the playbook rules, and the
// message names the step and the field.
func TestPlanCheckNamesTheStep(t *testing.T) {
	p := testPlan("a")
	p.Steps[0].Run.Command = nil
	if err := checkPlan(p); err == nil || err.Error() != `plan.steps[0] (one): command: is required; give the command as an argv list, e.g. [uname, -a]` {
		t.Errorf("checkPlan: %v", err)
	}
}
