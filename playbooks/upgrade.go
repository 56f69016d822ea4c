package playbooks

import (
	"strconv"
	"strings"
)

// RollingUpgradeStep upgrades the Docker engine of the step's swarm nodes, batch by
// batch: managers one at a time, then workers in batches of at most MaxUnavailable
// percent of them. Each node is drained (and its tasks seen running elsewhere),
// upgraded by InstallDocker with Docker's settings, restarted, seen Ready, set
// active again, and the swarm's services seen converged before the next batch.
type RollingUpgradeStep struct {
	// Docker is the engine to upgrade to: source, version (required), mirror,
	// packages, daemonConfig and users, as an installDocker step reads them.
	Docker InstallDockerStep `json:"docker"`
	// Manager names the host whose engine is asked; default: a reachable manager
	// of the inventory, other than the nodes being upgraded when there is one.
	Manager string `json:"manager,omitempty"`
	// MaxUnavailable is the disruption budget: the percentage of the workers that
	// may be drained at once (at least one node). Managers go one at a time.
	MaxUnavailable int `json:"maxUnavailable"`
	// Approval: after each batch the run waits for an "approve" signal before it
	// starts the next one.
	Approval bool `json:"approval,omitempty"`
	// NoBackup skips the Raft state backup taken from a manager before the first
	// node is changed (playbook field backup: false).
	NoBackup bool `json:"noBackup,omitempty"`
}

// defaultMaxUnavailable is the default disruption budget, in percent of workers.
const defaultMaxUnavailable = 25

// readRollingUpgrade reads the fields of a rollingNodeUpgrade step: the engine
// fields of installDocker, plus manager, maxUnavailable, approval and backup.
func readRollingUpgrade(f *file, m *fields, s *Step, c *stepContext) {
	readInstallDocker(f, m, s, c)
	u := &RollingUpgradeStep{Docker: *s.InstallDocker, MaxUnavailable: defaultMaxUnavailable}
	s.InstallDocker, s.Upgrade = nil, u
	u.Manager = f.managerRef(m)
	if n, p := m.get("maxUnavailable"); n != nil {
		if v, ok := f.nonEmptyStr(n, p); ok {
			pct, err := strconv.Atoi(strings.TrimSuffix(v, "%"))
			if !strings.HasSuffix(v, "%") || err != nil {
				f.errorAt(n, p, "must be a percentage of the workers from 1%% to 100%%, such as 25%%, got %s", quote(v))
			} else {
				u.MaxUnavailable = pct
			}
		}
	}
	if n, p := m.get("approval"); n != nil {
		u.Approval, _ = f.boolean(n, p)
	}
	if n, p := m.get("backup"); n != nil {
		if b, ok := f.boolean(n, p); ok {
			u.NoBackup = !b
		}
	}
}

// Normalize checks a rollingNodeUpgrade step's settings: those of installDocker
// (version required), the manager and the disruption budget. A budget of 0 (JSON
// input that leaves it out) upgrades one worker at a time.
func (u *RollingUpgradeStep) Normalize(sc Scope) Problems {
	ps := u.Docker.Normalize(sc)
	if u.Docker.Version == "" {
		ps.add("version", "is required; give the engine package version to upgrade to, such as 20.10.24+dfsg1-1+deb12u1; nodes that have it already are left alone")
	}
	sc.inventoryRef(&ps, "manager", u.Manager)
	if u.MaxUnavailable < 0 || u.MaxUnavailable > 100 {
		ps.add("maxUnavailable", "must be a percentage of the workers from 1%% to 100%%, such as 25%%, got %d%%", u.MaxUnavailable)
	}
	return ps
}

// WorkerBatch is the number of workers upgraded at once under a budget of pct
// percent of workers: at least one.
func WorkerBatch(workers, pct int) int {
	return max(1, workers*pct/100)
}
