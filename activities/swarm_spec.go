package activities

import (
	"cmp"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// This file compares a whole service spec (a stack's service, built by
// internal/compose) with the one the engine holds, so that a re-run with the
// same files sends nothing. The engine returns what it was sent, plus a few
// values it fills in itself; those, and every empty value (nil, "", 0, false,
// an empty list or mapping), count as not set on both sides.

// engineDefaults are values the engine writes into a spec that was sent without
// them, by JSON path.
var engineDefaults = map[string]any{
	"TaskTemplate.ContainerSpec.Isolation": "default",
	"TaskTemplate.Runtime":                 "container",
	"EndpointSpec.Mode":                    "vip",
	// swarmkit's restart delay when none is given (JSON numbers are float64)
	"TaskTemplate.RestartPolicy.Delay": float64(restartDelay),
}

// restartDelay is the engine's restart delay when a restart policy gives none.
const restartDelay = 5 * time.Second

// specFieldNames are the names a difference is reported under, by JSON path
// prefix (the longest first); other paths are reported as they are.
var specFieldNames = []struct{ prefix, name string }{
	{"TaskTemplate.ContainerSpec.Image", "image"},
	{"TaskTemplate.ContainerSpec.Command", "entrypoint"},
	{"TaskTemplate.ContainerSpec.Args", "command"},
	{"TaskTemplate.ContainerSpec.Env", "env"},
	{"TaskTemplate.ContainerSpec.Labels", "containerLabels"},
	{"TaskTemplate.ContainerSpec.Mounts", "mounts"},
	{"TaskTemplate.ContainerSpec.Secrets", "secrets"},
	{"TaskTemplate.ContainerSpec.Configs", "configs"},
	{"TaskTemplate.ContainerSpec.Healthcheck", "healthcheck"},
	{"TaskTemplate.ContainerSpec.Dir", "workdir"},
	{"TaskTemplate.ContainerSpec.User", "user"},
	{"TaskTemplate.ContainerSpec.StopGracePeriod", "stopGracePeriod"},
	{"TaskTemplate.ContainerSpec", "container"},
	{"TaskTemplate.Resources", "resources"},
	{"TaskTemplate.RestartPolicy", "restartPolicy"},
	{"TaskTemplate.Placement", "placement"},
	{"TaskTemplate.Networks", "networks"},
	{"TaskTemplate.LogDriver", "logging"},
	{"TaskTemplate", "task"},
	{"EndpointSpec", "ports"},
	{"Mode", "mode"},
	{"UpdateConfig", "updateConfig"},
	{"RollbackConfig", "rollbackConfig"},
	{"Labels", "labels"},
	{"Name", "name"},
}

// specDifferences names the parts in which the engine's spec cur differs from
// want, sorted; none when want would change nothing.
func specDifferences(cur, want swarm.ServiceSpec) []string {
	a, b := normalSpec(cur), normalSpec(want)
	var paths []string
	diffPaths("", a, b, &paths)
	var names []string
	for _, p := range paths {
		name := p
		for _, f := range specFieldNames {
			if p == f.prefix || strings.HasPrefix(p, f.prefix+".") {
				name = f.name
				break
			}
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// withSpecDefaults fills in what the engine would: one replica, one completion,
// and in update and rollback configs the failure action pause, a 5s monitor and
// stop-first. A spec sent so compares equal to what the engine then holds.
func withSpecDefaults(s swarm.ServiceSpec) swarm.ServiceSpec {
	for _, u := range []**swarm.UpdateConfig{&s.UpdateConfig, &s.RollbackConfig} {
		if *u == nil {
			continue
		}
		c := **u
		c.FailureAction = cmp.Or(c.FailureAction, swarm.UpdateFailureActionPause)
		c.Order = cmp.Or(c.Order, swarm.UpdateOrderStopFirst)
		if c.Monitor == 0 {
			c.Monitor = 5 * time.Second
		}
		*u = &c
	}
	one := uint64(1)
	if r := s.Mode.Replicated; r != nil && r.Replicas == nil {
		c := *r
		c.Replicas = &one
		s.Mode.Replicated = &c
	}
	if j := s.Mode.ReplicatedJob; j != nil && (j.MaxConcurrent == nil || j.TotalCompletions == nil) {
		c := *j
		if c.MaxConcurrent == nil {
			c.MaxConcurrent = &one
		}
		if c.TotalCompletions == nil {
			c.TotalCompletions = c.MaxConcurrent
		}
		s.Mode.ReplicatedJob = &c
	}
	return s
}

// normalSpec is a spec as a JSON tree without empty values and engine defaults.
func normalSpec(s swarm.ServiceSpec) any {
	b, err := json.Marshal(withSpecDefaults(s))
	if err != nil {
		return nil
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return prune("", v)
}

// prune drops empty values and engine defaults from a JSON tree (path is v's).
func prune(path string, v any) any {
	if d, ok := engineDefaults[path]; ok && reflect.DeepEqual(v, d) {
		return nil
	}
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range t {
			if p := prune(joinPath(path, k), x); p != nil {
				out[k] = p
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		var out []any
		for _, x := range t {
			p := prune(path, x)
			if p == nil {
				p = map[string]any{} // keep the item, so that positions still compare
			}
			out = append(out, p)
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case string:
		if t == "" {
			return nil
		}
	case bool:
		if !t {
			return nil
		}
	case float64:
		if t == 0 {
			return nil
		}
	}
	return v
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// diffPaths adds the paths of the mappings' keys whose values differ.
func diffPaths(path string, a, b any, out *[]string) {
	if reflect.DeepEqual(a, b) {
		return
	}
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		*out = append(*out, path)
		return
	}
	keys := slices.Sorted(maps.Keys(am))
	for k := range bm {
		if _, ok := am[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		diffPaths(joinPath(path, k), am[k], bm[k], out)
	}
}
