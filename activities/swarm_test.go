package activities

import (
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
)

func TestCheckQuorum(t *testing.T) {
	three := func(reachable ...bool) []quorumNode {
		names := []string{"master", "slave01", "slave02"}
		var out []quorumNode
		for i, r := range reachable {
			out = append(out, quorumNode{ID: names[i], Name: names[i], Manager: true, Reachable: r})
		}
		return append(out, quorumNode{ID: "w1", Name: "worker1"})
	}
	tests := []struct {
		name  string
		nodes []quorumNode
		id    string
		stays bool
		want  string // "" for allowed, else a part of the message
	}{
		{"demote one of three, all up", three(true, true, true), "slave01", false, ""},
		{"demote while another is down", three(true, true, false), "slave01", false,
			"demoting x would leave 2 manager(s), 1 of them reachable (slave02 unreachable); Raft needs a quorum of 2 of 2"},
		{"upgrade one of three, all up", three(true, true, true), "slave01", true, ""},
		{"upgrade while another is down", three(true, true, false), "master", true, "would leave 3 manager(s), 1 of them reachable"},
		{"demote the last manager", three(true), "master", false, "a swarm needs at least one manager"},
		{"a worker is not Raft's business", three(true), "w1", false, ""},
		{"demote one of two", three(true, true), "slave01", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkQuorum(tt.nodes, tt.id, "demoting x", tt.stays)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ae *temporal.ApplicationError
			if !errors.As(err, &ae) || ae.Type() != ErrQuorum || !ae.NonRetryable() {
				t.Fatalf("want a non-retryable %s error, got %v", ErrQuorum, err)
			}
			if !strings.Contains(ae.Message(), tt.want) {
				t.Fatalf("message %q lacks %q", ae.Message(), tt.want)
			}
		})
	}
}

func TestQuorumText(t *testing.T) {
	for n, want := range map[int]string{
		1: "1 manager(s): Raft quorum is 1; 0 may be lost",
		3: "3 manager(s): Raft quorum is 2; 1 may be lost",
		4: "use an odd number",
	} {
		if got := QuorumText(n); !strings.Contains(got, want) {
			t.Errorf("QuorumText(%d) = %q, want it to contain %q", n, got, want)
		}
	}
}
