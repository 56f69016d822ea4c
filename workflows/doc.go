// Package workflows holds clusterflow's Temporal workflows: RunPlaybook, which runs a
// playbook's steps in order, ClusterLock, a run's lease on its cluster, and the
// procedures, one per file, each one exported function with one input struct and one
// result struct, run as a child of RunPlaybook for a step or on their own from the
// CLI or the Web UI.
//
// Where things are:
//   - procedures.go: the table of procedures. Register (register.go), the replay
//     test's list of workflows and RunPlaybook's dispatch of a step to its child
//     workflow are derived from it.
//   - options.go: every activity and child workflow preset, and the one list of
//     non-retryable error types.
//   - fanout.go: fanOut, the one way to fan out over hosts (a bounded window, in a
//     deterministic order), and eachHost for hosts that run a sequence of activities.
//   - hosts.go: hostTracker, the per-host progress (HostProgress) and outcomes
//     (HostOutcome) every procedure keeps.
//   - activities.go: the typed nil pointers activities are called through.
//
// Input is checked first, with the playbook package's rules: Plan.Normalize for a
// plan, the step type's Normalize method for a procedure's settings. Bad input fails
// the run at once with the non-retryable InvalidInput, before any host is touched.
//
// Workflow code here must stay deterministic: no time.Now, rand, map ranging,
// goroutines or I/O; use workflow.Now, workflow.Go, sorted slices and activities.
// `make lint` runs workflowcheck.
//
// Versioning. The replay test runs every history kept in testdata/histories against
// the current code, and fails when a registered workflow has none. What is true
// today: two changes are guarded with workflow.GetVersion (the cluster lease,
// clusterlock.go; RunPlaybook's bounded failure details, failure.go); other changes
// to a command sequence were made before a release and their histories re-recorded
// instead. From the first tagged release on, every change to a shipped workflow's
// command sequence must be guarded with workflow.GetVersion and the old histories
// kept.
//
// # Adding a procedure
//
// A new step kind "foo" run by a workflow Foo takes these files: 3 new ones, and 5
// edits in files that exist (6 when the activities are a new struct).
//
//  1. playbooks/plan.go: the KindFoo constant in the closed list, and the pointer
//     field Foo *FooStep on Step.
//  2. playbooks/foo.go (new): the FooStep type; readFoo, which only decodes the YAML
//     fields (types, defaults of fields left out, local files); and
//     (*FooStep).Normalize, which applies the defaults of zero values and checks every
//     value. Rules the activities share go in internal/rules.
//  3. playbooks/steps.go: the stepKinds entry: its fields, readFoo, and
//     settingsOf("foo", func(s *Step) *FooStep { return s.Foo }).
//  4. playbooks/fielduse.go: the fieldUses entry: what parallel, timeout and attempts
//     do for the kind (what FooInput takes from the step), or why it refuses them;
//     playbooks/doc.go: the kind's fields in the format reference and its line in
//     the common fields' table.
//  5. activities/foo.go (new): its activities, added in activities/register.go; a new
//     activity struct also gets its typed nil pointer in workflows/activities.go.
//  6. workflows/foo.go (new): the FooName constant (the registered name: stable),
//     FooInput, FooResult (with its hostOutcomes method) and Foo: check the input
//     (checkHosts, then the settings' Normalize), publish progress (a hostTracker,
//     the "progress" query, SetCurrentDetails), then the steps, numbered "// Step N.".
//     Presets come from options.go; fan out with fanOut or eachHost.
//  7. workflows/procedures.go: one entry in procedures,
//     procedureOf(FooName, Foo, func(c stepCall) FooInput {...}, playbooks.KindFoo).
//     Register, the replay test's list and RunPlaybook's dispatch follow from it.
//
// And its tests and docs: invalid fixtures in playbooks/testdata/invalid (one
// problem each, with the "# want:" line), cases in playbooks/normalize_test.go,
// workflows/foo_test.go with fake activities, a recorded history
// testdata/histories/Foo-*.json (record it with CLUSTERFLOW_RECORD_HISTORIES from an
// integration or lab run; the replay test requires one), an e2e or lab test, an
// example in a playbook, and the kind in README.md's playbook reference (an example
// under Procedures, its rows in the step reference's tables).
// TestEveryStepKindRuns fails when a kind has no procedure (or run/upload),
// TestKindsHaveRules when it has no Normalize or is missing from playbooks/doc.go,
// TestFieldUsesCoverKinds when it has no fieldUses entry, and TestFieldUseDocumented
// and TestReferenceComplete when README.md or doc.go lack it, one of its fields, or a
// key the parser accepts.
package workflows
