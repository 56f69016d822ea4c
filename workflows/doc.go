// Package workflows holds clusterflow's Temporal workflows: one procedure per file, one
// exported workflow function with one input struct and one result struct.
//
// Workflow code here must stay deterministic: no time.Now, rand, map ranging,
// goroutines or I/O; use workflow.Now, workflow.Go, sorted slices and activities.
// Every change to a shipped workflow is guarded with workflow.GetVersion, and the
// replay test runs every history kept in testdata/histories against the current code.
// Activities are called through the typed nil pointers in activities.go.
package workflows
