package playbooks

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// bigPlan is a valid plan with hosts hosts and steps run steps on all of them.
func bigPlan(hosts, steps int) *Plan {
	p := &Plan{Name: "big"}
	var names []string
	for i := range hosts {
		name := fmt.Sprintf("h%d", i)
		names = append(names, name)
		p.Hosts = append(p.Hosts, Host{Name: name, Address: "10.0.0.1", Port: 22, User: "root", UseAgent: true,
			KnownHostsFile: "/k", HostKeyPolicy: HostKeyStrict})
	}
	for i := range steps {
		p.Steps = append(p.Steps, Step{Name: fmt.Sprintf("s%d", i), Kind: KindRun, Hosts: names, Parallel: 10,
			Timeout: Duration(time.Minute), Attempts: 1, Run: &RunStep{Command: []string{"true"}, ExitCodes: []int{0}}})
	}
	return p
}

func TestPlanLimits(t *testing.T) {
	if err := bigPlan(1000, 4).Normalize(); err != nil {
		t.Fatalf("1000 hosts x 4 steps is within the limits: %v", err)
	}
	big := bigPlan(3, 1)
	big.Vars = map[string]string{"blob": strings.Repeat("x", maxPlanJSON)}
	for name, c := range map[string]struct {
		plan *Plan
		want string
	}{
		"host-steps": {bigPlan(1000, 5), "plan.steps[4] (s4).hosts: the steps so far run on 5000 hosts in all"},
		"hosts":      {bigPlan(maxHosts+1, 1), "plan.hosts: has 1001 hosts; the limit is 1000"},
		"steps":      {bigPlan(1, maxSteps+1), "plan.steps: has 201 steps; the limit is 200"},
		"size":       {big, "plan: the plan is 513 KiB as JSON; the limit is 512 KiB"},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.plan.Normalize()
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("got %v\nwant %s...", err, c.want)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	head := "apiVersion: clusterflow.io/v1\nkind: Playbook\nmetadata: {name: big}\nspec:\n  inventory:\n    hosts:\n"
	var b strings.Builder
	b.WriteString(head)
	for i := range 1000 {
		fmt.Fprintf(&b, "      - {name: h%d, address: 10.0.%d.%d, user: root, useAgent: true}\n", i, i/250, i%250+1)
	}
	b.WriteString("  steps:\n")
	for i := range 5 {
		fmt.Fprintf(&b, "    - {name: s%d, kind: run, hosts: all, command: [\"true\"]}\n", i)
	}
	_, err := Parse("big.yaml", []byte(b.String()), t.TempDir())
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("want one error, got %v", err)
	}
	e := list[0]
	if e.File != "big.yaml" || e.Line != 1012 || e.Field != "spec.steps[4].hosts" || !strings.Contains(e.Msg, "5000 hosts in all") {
		t.Fatalf("got %v", e)
	}

	// A plan over the size limit, from vars: reported for the file.
	var v strings.Builder
	v.WriteString("apiVersion: clusterflow.io/v1\nkind: Playbook\nmetadata: {name: big}\nspec:\n  vars:\n")
	for i := range 600 {
		fmt.Fprintf(&v, "    v%d: %s\n", i, strings.Repeat("x", 1000))
	}
	v.WriteString("  inventory:\n    hosts:\n      - {name: a, address: 10.0.0.1, user: root, useAgent: true}\n")
	v.WriteString("  steps:\n    - {name: s, kind: run, hosts: all, command: [\"true\"]}\n")
	_, err = Parse("vars.yaml", []byte(v.String()), t.TempDir())
	if err == nil || !strings.HasPrefix(err.Error(), "vars.yaml: the plan is ") || !strings.Contains(err.Error(), "the limit is 512 KiB") {
		t.Fatalf("got %v", err)
	}
}
