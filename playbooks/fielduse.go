package playbooks

import (
	"fmt"
	"strconv"
)

// No silent fields: every step takes the common fields parallel, maxFailPercent,
// timeout and attempts, but a procedure step (a kind that runs a child workflow)
// uses only those its workflow has a place for. fieldUses says, kind by kind, what
// each does; a field a kind does not use is refused where the playbook writes it
// (at its line), and in a plan sent as JSON when it carries a value other than the
// default (the parser writes the defaults into every plan). maxFailPercent takes
// effect for every kind: RunPlaybook applies the failure budget to the outcomes the
// procedure reports per host.
//
// Lookups only: this runs in workflow code (Plan.CheckFieldUse), which must not
// range over a map.

// use is what one common field does for a kind: effect, or, when the kind does not
// use it, why (for the refusal).
type use struct {
	effect string
	why    string
}

// kindUse is what parallel, timeout and attempts do for one kind.
type kindUse struct {
	parallel, timeout, attempts use
}

// unusedFields are the common fields some kinds do not use, in the order they are
// checked.
var unusedFields = []string{"parallel", "timeout", "attempts"}

func does(effect string) use { return use{effect: effect} }
func not(why string) use     { return use{why: why} }

var (
	retryOwn   = not("its activities retry on their own")
	oneNode    = not("it changes one node at a time")
	oneManager = not("it works through one manager")
)

// fieldUses is the table; TestFieldUseDocumented checks README.md and doc.go show it.
var fieldUses = map[string]kindUse{
	KindRun:    {does("hosts at once"), does("per host attempt"), does("tries per host on retryable errors")},
	KindUpload: {does("hosts at once"), does("per host attempt"), does("tries per host on retryable errors")},
	KindDistributeKeys: {does("hosts at once in each phase"), does("per attempt of each host activity"),
		does("tries of each host activity")},
	KindInstallDocker: {does("hosts at once"),
		not("its activities have bounds of their own (a package install up to 20m)"), retryOwn},
	KindSwarmInit: {not("it initialises the first manager, then joins the other hosts together"),
		not("its activities have bounds of their own"), retryOwn},
	KindPromote:    {oneNode, not("only drain waits (for the tasks to move)"), retryOwn},
	KindDemote:     {oneNode, not("only drain waits (for the tasks to move)"), retryOwn},
	KindActivate:   {oneNode, not("only drain waits (for the tasks to move)"), retryOwn},
	KindRemoveNode: {oneNode, not("only drain waits (for the tasks to move)"), retryOwn},
	KindDrain:      {oneNode, does("bounds each node's wait for its tasks to move"), retryOwn},
	KindConsulBootstrap: {does("hosts at once"),
		not("its activities have bounds of their own (an install up to 20m)"), retryOwn},
	KindRotateCA: {not("the swarm renews every node's certificate itself"),
		does("how long the rotation is followed (it goes on after that)"), retryOwn},
	KindCheckCertificates: {not("it reads every node's certificate at once"),
		does("action rotate: how long the rotation is followed (refused with action fail)"), retryOwn},
	KindDeployService: {not("the update's pace is updateConfig.parallelism"),
		does("bounds the wait for the update's outcome"), retryOwn},
	KindUpdateService: {not("the update's pace is updateConfig.parallelism"),
		does("bounds the wait for the update's outcome"), retryOwn},
	KindRollingNodeUpgrade: {not("the batch size is maxUnavailable"),
		does("bounds each wait: tasks moved off a node, node Ready, services converged"), retryOwn},
	KindDeployStack: {not("the pace of each service is its update_config"),
		does("bounds the wait for the services' outcomes"), retryOwn},
	KindBuildImage: {does("hosts loading the image at once"),
		not("a build and a load have bounds of their own (1h, 30m)"), retryOwn},
	KindRemoveService: {oneManager, does("bounds the wait for the service's tasks to go"), retryOwn},
	KindRemoveStack:   {oneManager, does("bounds the wait for the stack's tasks to go and its networks to be free"), retryOwn},
	KindRemoveNetwork: {oneManager, does("bounds the wait for the network to be free"), retryOwn},
	KindRemoveVolume: {not("it removes the volume on every host at once"),
		not("removing a volume does not wait"), retryOwn},
}

// of is the use of one of the fields in unusedFields.
func (k kindUse) of(field string) use {
	switch field {
	case "parallel":
		return k.parallel
	case "timeout":
		return k.timeout
	default:
		return k.attempts
	}
}

// unusedWhy says why step s does not use field (one of unusedFields), or "" when it
// does (or its kind is unknown: that is reported already).
func unusedWhy(s *Step, field string) string {
	k, ok := fieldUses[s.Kind]
	if !ok {
		return ""
	}
	if s.Kind == KindCheckCertificates && field == "timeout" &&
		(s.CheckCertificates == nil || s.CheckCertificates.Action != CertActionRotate) {
		return "timeout bounds the rotation only (action: " + CertActionRotate + ")"
	}
	return k.of(field).why
}

// unusedMsg is the refusal of a field step s does not use.
func unusedMsg(s *Step, field, why string) string {
	return fmt.Sprintf("kind %s does not use %s: %s", s.Kind, field, why)
}

// fieldDefault is the default of one of unusedFields, as a plan carries it.
func fieldDefault(field string) string {
	switch field {
	case "parallel":
		return strconv.Itoa(defaultParallel)
	case "timeout":
		return shortDuration(defaultTimeout)
	default:
		return strconv.Itoa(defaultAttempts)
	}
}

// isDefault reports whether step s carries the default of field (or the zero value,
// which Normalize refuses on its own).
func (s *Step) isDefault(field string) bool {
	switch field {
	case "parallel":
		return s.Parallel == defaultParallel || s.Parallel == 0
	case "timeout":
		return s.Timeout.Std() == defaultTimeout || s.Timeout == 0
	default:
		return s.Attempts == defaultAttempts || s.Attempts == 0
	}
}

// UnusedFields finds the common fields a step carries with a value other than the
// default that its kind does not use: a plan sent as JSON that would have them
// silently ignored. The parser refuses them where the playbook writes them, whatever
// the value.
func (s *Step) UnusedFields() Problems {
	var ps Problems
	for _, field := range unusedFields {
		if s.isDefault(field) {
			continue
		}
		if why := unusedWhy(s, field); why != "" {
			ps.add(field, "%s; set it to the default (%s)", unusedMsg(s, field, why), fieldDefault(field))
		}
	}
	return ps
}

// CheckFieldUse refuses a plan (sent as JSON) whose steps carry fields their kind
// does not use (Step.UnusedFields). The error names the step. RunPlaybook asks it
// after Plan.Normalize, under a workflow version of its own.
func (p *Plan) CheckFieldUse() error {
	for i := range p.Steps {
		s := &p.Steps[i]
		if err := s.UnusedFields().Err(fmt.Sprintf("plan.steps[%d] (%s)", i, s.Name)); err != nil {
			return err
		}
	}
	return nil
}

// checkFieldUse refuses, at their lines, the common fields the step's YAML writes
// that its kind does not use.
func (f *file) checkFieldUse(m *fields, s *Step) {
	for _, field := range unusedFields {
		k, p := m.at[field], fieldPath(m.path, field)
		if k == nil || f.r.reportedAt(f.name, p) {
			continue
		}
		if s.Kind == KindCheckCertificates && field == "timeout" && f.r.reportedAt(f.name, fieldPath(m.path, "action")) {
			continue // whether it is used depends on the action, which is wrong
		}
		if why := unusedWhy(s, field); why != "" {
			f.errorAt(k, p, "%s; leave it out", unusedMsg(s, field, why))
		}
	}
}
