package activities

import (
	"fmt"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/swarm"
)

// This file is Raft's quorum arithmetic, which every change of a swarm's managers
// is checked against.

// quorumNode is what the quorum arithmetic needs of a node.
type quorumNode struct {
	ID, Name  string
	Manager   bool
	Reachable bool
}

func nodesOf(nodes []swarm.Node) []quorumNode {
	out := make([]quorumNode, 0, len(nodes))
	for _, n := range nodes {
		q := quorumNode{ID: n.ID, Name: n.Description.Hostname}
		if n.ManagerStatus != nil {
			q.Manager = true
			q.Reachable = n.ManagerStatus.Reachability == swarm.ReachabilityReachable
		}
		out = append(out, q)
	}
	return out
}

// checkQuorum refuses an operation on node id that would leave fewer reachable
// managers than Raft quorum needs. what describes the operation ("demoting
// slave01"). With stays, the node stays a manager but goes away for a while (an
// engine upgrade); otherwise it stops being a manager (demotion, removal).
func checkQuorum(nodes []quorumNode, id, what string, stays bool) error {
	total, reachable := 0, 0
	var down []string
	target := false
	for _, n := range nodes {
		if !n.Manager {
			continue
		}
		if n.ID == id {
			target = true
			if stays {
				total++
			}
			continue
		}
		total++
		if n.Reachable {
			reachable++
		} else {
			down = append(down, n.Name)
		}
	}
	if !target {
		return nil // not a manager: Raft is not concerned
	}
	quorum := total/2 + 1
	if total > 0 && reachable >= quorum {
		return nil
	}
	msg := fmt.Sprintf("%s would leave %d manager(s), %d of them reachable", what, total, reachable)
	if len(down) > 0 {
		slices.Sort(down)
		msg += fmt.Sprintf(" (%s unreachable)", strings.Join(down, ", "))
	}
	if total == 0 {
		msg += "; a swarm needs at least one manager"
	} else {
		msg += fmt.Sprintf("; Raft needs a quorum of %d of %d (more than half), so the swarm could no longer be managed", quorum, total)
	}
	return quorumRefused("refused: " + msg + ". Bring the unreachable managers back, or promote another node first")
}

// QuorumText explains a manager count: "3 managers: Raft quorum is 2; 1 may be lost".
func QuorumText(managers int) string {
	if managers <= 0 {
		return "no managers"
	}
	q := managers/2 + 1
	s := fmt.Sprintf("%d manager(s): Raft quorum is %d; %d may be lost without losing control of the swarm", managers, q, managers-q)
	if managers%2 == 0 {
		s += fmt.Sprintf(" (an even count tolerates no more losses than %d managers: use an odd number)", managers-1)
	}
	return s
}
