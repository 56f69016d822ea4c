package activities

import (
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"
)

func TestUpgradeRefusal(t *testing.T) {
	manager := func(id string, r swarm.Reachability) swarm.Node {
		return swarm.Node{ID: id, Description: swarm.NodeDescription{Hostname: id}, ManagerStatus: &swarm.ManagerStatus{Reachability: r}}
	}
	worker := swarm.Node{ID: "w1", Description: swarm.NodeDescription{Hostname: "w1"}}
	only := []swarm.Node{manager("m1", swarm.ReachabilityReachable), worker}
	if why := upgradeRefusal(only, only[0], "m1"); why != "" {
		t.Errorf("the only manager refused: %s", why)
	}
	three := []swarm.Node{manager("m1", swarm.ReachabilityReachable), manager("m2", swarm.ReachabilityReachable), manager("m3", swarm.ReachabilityUnreachable), worker}
	why := upgradeRefusal(three, three[0], "m1")
	if !strings.Contains(why, "upgrading m1 would leave 3 manager(s), 1 of them reachable (m3 unreachable)") {
		t.Errorf("m1 with m3 down: %q", why)
	}
	three[2].ManagerStatus.Reachability = swarm.ReachabilityReachable
	if why := upgradeRefusal(three, three[0], "m1"); why != "" {
		t.Errorf("m1 with all up: %q", why)
	}
}

func TestServiceCountString(t *testing.T) {
	for c, want := range map[ServiceCount]string{
		{Name: "web", Mode: "replicated", Running: 2, Desired: 3}:                 "web 2/3",
		{Name: "agent", Mode: "global", Running: 3, Desired: 3}:                   "agent 3/3 (global)",
		{Name: "web", Mode: "replicated", Running: 3, Desired: 3, Updating: true}: "web 3/3 (updating)",
	} {
		if got := c.String(); got != want {
			t.Errorf("%+v: %q, want %q", c, got, want)
		}
	}
}
