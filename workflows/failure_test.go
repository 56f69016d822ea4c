package workflows

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clusterflow/clusterflow/playbooks"
)

func TestJSONSize(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\`, "<a&b>", "\x00\x1f\n\r\t\b\f", "é€😀", "\u2028\u2029", "bad \xff byte"} {
		b, _ := json.Marshal(s)
		if got, want := jsonSize(s), len(b)-2; got != want {
			t.Errorf("jsonSize(%q) = %d, json.Marshal says %d", s, got, want)
		}
	}
	for _, s := range []string{strings.Repeat("<", 1000), strings.Repeat("é", 1000), strings.Repeat("x", 1000)} {
		c := clipJSON(s, maxHostMessage)
		if n := jsonSize(c); n > maxHostMessage || !strings.HasSuffix(c, "…(clipped)") {
			t.Errorf("clipJSON(%.5q...) is %d bytes as JSON: %.40q", s, n, c)
		}
	}
}

// TestProgressWorstCase: a progress at playbooks' host-step limit, with the longest
// names and messages, stays under Temporal's 2 MB payload limit.
func TestProgressWorstCase(t *testing.T) {
	const hostSteps = 4000 // playbooks.maxHostSteps
	now := time.Date(2026, 12, 4, 19, 17, 58, 883340429, time.UTC)
	p := &Progress{Playbook: strings.Repeat("p", 63), Cluster: strings.Repeat("c", 63), Outcome: OutcomeFailed, Error: clipText(strings.Repeat("x", 9000), maxFailureMessage)}
	for s := range 4 {
		st := StepState{Name: strings.Repeat("s", 100), Kind: "rollingNodeUpgrade", Status: StepFailed}
		for h := range hostSteps / 4 {
			name := strings.Repeat("h", 58) + string(rune('a'+s)) + strings.Repeat("0", 4-len(string(rune(h%10+'0')))) + string(rune(h%10+'0'))
			st.Hosts = append(st.Hosts, HostState{Host: name, State: HostUnchanged, Message: clipJSON(strings.Repeat("<", 1000), maxHostMessage),
				Started: now, Finished: now})
		}
		p.Steps = append(p.Steps, st)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 1900<<10 {
		t.Fatalf("worst-case progress is %d bytes", len(b))
	}
	t.Logf("worst-case progress of %d host-steps: %d bytes", hostSteps, len(b))
}

// TestHostMessageLimit: small playbooks keep whole messages (the hint at their end),
// the largest keep maxHostMessage each.
func TestHostMessageLimit(t *testing.T) {
	plan := func(hosts, steps int) *playbooks.Plan {
		p := &playbooks.Plan{}
		for range steps {
			p.Steps = append(p.Steps, playbooks.Step{Hosts: make([]string, hosts)})
		}
		return p
	}
	for _, c := range []struct{ hosts, steps, want int }{
		{3, 5, fullHostMessage}, {0, 0, fullHostMessage}, {100, 10, 960}, {1000, 4, maxHostMessage}, {2000, 2, maxHostMessage},
	} {
		if got := hostMessageLimit(plan(c.hosts, c.steps)); got != c.want {
			t.Errorf("%d hosts x %d steps: limit %d, want %d", c.hosts, c.steps, got, c.want)
		}
	}
}
