package playbooks

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	units "github.com/docker/go-units"
	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/compose"
)

// This file holds the parts of a service spec beyond image, replicas, env,
// ports, mounts, networks, constraints, health check and update policies (see
// service.go), and the conversion of a ServiceStep to a Compose service: the
// activities build the engine's spec from it with internal/compose.ServiceSpec,
// the one mapping deployService and deployStack share.

// Service modes, as a Compose file's deploy.mode writes them.
const (
	ModeReplicated    = compose.ModeReplicated
	ModeGlobal        = compose.ModeGlobal
	ModeReplicatedJob = compose.ModeReplicatedJob
	ModeGlobalJob     = compose.ModeGlobalJob
)

// Restart conditions.
const (
	RestartNone      = "none"
	RestartOnFailure = "on-failure"
	RestartAny       = "any"
)

// ServiceResources are the CPU and memory limits and reservations of each task.
type ServiceResources struct {
	Limits       *ResourceValues `json:"limits,omitempty"`
	Reservations *ResourceValues `json:"reservations,omitempty"`
}

// ResourceValues is an amount of CPUs ("0.5"), memory (bytes) and, for limits,
// processes.
type ResourceValues struct {
	CPUs        string `json:"cpus,omitempty"`
	MemoryBytes int64  `json:"memory,omitempty"`
	Pids        int64  `json:"pids,omitempty"`
}

// RestartPolicy says when the swarm restarts a task's container.
type RestartPolicy struct {
	Condition   string   `json:"condition"` // RestartNone, RestartOnFailure, RestartAny (the engine's default)
	Delay       Duration `json:"delay,omitempty"`
	MaxAttempts *uint64  `json:"maxAttempts,omitempty"`
	Window      Duration `json:"window,omitempty"`
}

// ObjectRef mounts a swarm secret or config (Source, by name) as a file of each
// task: Target (default /run/secrets/SOURCE for a secret, /SOURCE for a config),
// owned by UID:GID (default 0:0) with Mode (default 0444).
type ObjectRef struct {
	Source string `json:"source"`
	Target string `json:"target,omitempty"`
	UID    string `json:"uid,omitempty"`
	GID    string `json:"gid,omitempty"`
	Mode   uint32 `json:"mode,omitempty"`
}

var (
	// spreadSpec is a node attribute a placement preference spreads over.
	spreadSpec = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	// numericID is a uid or gid.
	numericID = regexp.MustCompile(`^[0-9]{1,10}$`)
)

// maxStopGrace bounds stopGracePeriod.
const maxStopGrace = time.Hour

// readServiceSpec reads the fields of a service step that service.go does not.
func (f *file) readServiceSpec(m *fields, v *ServiceStep) {
	for _, s := range []struct {
		key string
		to  *string
	}{{"mode", &v.Mode}, {"workdir", &v.Workdir}, {"user", &v.User}} {
		if n, p := m.get(s.key); n != nil {
			*s.to, _ = f.nonEmptyStr(n, p)
		}
	}
	for _, l := range []struct {
		key string
		to  *[]string
	}{{"entrypoint", &v.Entrypoint}, {"command", &v.Command}, {"placementPreferences", &v.Preferences}} {
		if n, p := m.get(l.key); n != nil {
			*l.to, _ = f.stringList(n, p)
			if *l.to == nil {
				*l.to = []string{}
			}
		}
	}
	for _, l := range []struct {
		key string
		to  *map[string]string
	}{{"labels", &v.Labels}, {"containerLabels", &v.ContainerLabels}} {
		if n, p := m.get(l.key); n != nil {
			*l.to = f.labelMap(n, p)
		}
	}
	if n, p := m.get("maxReplicasPerNode"); n != nil {
		if x, ok := f.integer(n, p, 0, maxReplicas); ok {
			u := uint64(x)
			v.MaxReplicasPerNode = &u
		}
	}
	if n, p := m.get("stopGracePeriod"); n != nil {
		d, _ := f.anyDuration(n, p)
		v.StopGracePeriod = Duration(d)
	}
	if n, p := m.get("resources"); n != nil {
		v.Resources = f.serviceResources(n, p)
	}
	if n, p := m.get("restartPolicy"); n != nil {
		v.RestartPolicy = f.restartPolicy(n, p)
	}
	if n, p := m.get("secrets"); n != nil {
		v.Secrets = f.objectRefs(n, p)
	}
	if n, p := m.get("configs"); n != nil {
		v.Configs = f.objectRefs(n, p)
	}
}

// labelMap reads labels: keys are any non-empty text, values strings.
func (f *file) labelMap(n *yaml.Node, path string) map[string]string {
	m := f.mapping(n, path)
	if m == nil {
		return nil
	}
	out := map[string]string{}
	for _, k := range m.keys {
		if v, ok := f.str(m.vals[k.Value], keyPath(path, k.Value)); ok {
			out[k.Value] = v
		}
	}
	return out
}

// serviceNetworks reads networks: [backend, {name: front, aliases: [web]}].
func (f *file) serviceNetworks(n *yaml.Node, path string) ([]string, map[string][]string) {
	items, ok := f.list(n, path, "network names or {name, aliases} mappings")
	if !ok {
		return nil, nil
	}
	names := []string{}
	var aliases map[string][]string
	for i, item := range items {
		p := indexPath(path, i)
		if item.Kind != yaml.MappingNode {
			s, _ := f.nonEmptyStr(item, p)
			names = append(names, s)
			continue
		}
		m := f.mapping(item, p)
		if m == nil {
			names = append(names, "")
			continue
		}
		f.checkKeys(m, "name", "aliases")
		name := ""
		if v, vp := m.get("name"); v != nil {
			name, _ = f.nonEmptyStr(v, vp)
		} else {
			f.missing(m, "name", "the overlay network's name")
		}
		names = append(names, name)
		if v, vp := m.get("aliases"); v != nil && name != "" {
			if a, ok := f.stringList(v, vp); ok {
				if aliases == nil {
					aliases = map[string][]string{}
				}
				aliases[name] = a
			}
		}
	}
	return names, aliases
}

// serviceResources reads resources: {limits: {cpus, memory, pids}, reservations: {cpus, memory}}.
func (f *file) serviceResources(n *yaml.Node, path string) *ServiceResources {
	m := f.mapping(n, path)
	if m == nil {
		return nil
	}
	f.checkKeys(m, "limits", "reservations")
	r := &ServiceResources{}
	read := func(key string, pids bool) *ResourceValues {
		n, p := m.get(key)
		if n == nil {
			return nil
		}
		rm := f.mapping(n, p)
		if rm == nil {
			return nil
		}
		allowed := []string{"cpus", "memory"}
		if pids {
			allowed = append(allowed, "pids")
		}
		f.checkKeys(rm, allowed...)
		out := &ResourceValues{}
		if v, vp := rm.get("cpus"); v != nil {
			if v.Kind == yaml.ScalarNode && (v.Tag == "!!int" || v.Tag == "!!float" || v.Tag == "!!str") {
				out.CPUs = v.Value
			} else {
				f.errorAt(v, vp, `must be a number of CPUs such as 0.5 or "1.5", got %s`, describe(v))
			}
		}
		if v, vp := rm.get("memory"); v != nil {
			out.MemoryBytes = f.memory(v, vp)
		}
		if v, vp := rm.get("pids"); v != nil {
			x, _ := f.integer(v, vp, 0, 1<<22)
			out.Pids = int64(x)
		}
		return out
	}
	r.Limits = read("limits", true)
	r.Reservations = read("reservations", false)
	return r
}

// memory reads an amount of memory: 64M, 1G, 512k or a number of bytes.
func (f *file) memory(n *yaml.Node, path string) int64 {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!str") {
		f.errorAt(n, path, "must be an amount of memory such as 64M or 1G, got %s", describe(n))
		return 0
	}
	b, err := units.RAMInBytes(n.Value)
	if err != nil || b <= 0 {
		f.errorAt(n, path, "must be an amount of memory such as 64M or 1G, got %s", quote(n.Value))
		return 0
	}
	return b
}

// restartPolicy reads restartPolicy: {condition, delay, maxAttempts, window}.
func (f *file) restartPolicy(n *yaml.Node, path string) *RestartPolicy {
	m := f.mapping(n, path)
	if m == nil {
		return nil
	}
	f.checkKeys(m, "condition", "delay", "maxAttempts", "window")
	r := &RestartPolicy{}
	if v, vp := m.get("condition"); v != nil {
		r.Condition, _ = f.nonEmptyStr(v, vp)
	} else {
		f.missing(m, "condition", "none, on-failure or any")
	}
	for _, d := range []struct {
		key string
		to  *Duration
	}{{"delay", &r.Delay}, {"window", &r.Window}} {
		if v, vp := m.get(d.key); v != nil {
			x, _ := f.anyDuration(v, vp)
			*d.to = Duration(x)
		}
	}
	if v, vp := m.get("maxAttempts"); v != nil {
		if x, ok := f.integer(v, vp, 0, 1000); ok {
			u := uint64(x)
			r.MaxAttempts = &u
		}
	}
	return r
}

// objectRefs reads secrets or configs: [name, {source, target, uid, gid, mode}].
func (f *file) objectRefs(n *yaml.Node, path string) []ObjectRef {
	items, ok := f.list(n, path, "names or {source, target, uid, gid, mode} mappings")
	if !ok {
		return nil
	}
	refs := make([]ObjectRef, len(items))
	for i, item := range items {
		p := indexPath(path, i)
		if item.Kind != yaml.MappingNode {
			refs[i].Source, _ = f.nonEmptyStr(item, p)
			continue
		}
		m := f.mapping(item, p)
		if m == nil {
			continue
		}
		f.checkKeys(m, "source", "target", "uid", "gid", "mode")
		r := &refs[i]
		for _, s := range []struct {
			key string
			to  *string
		}{{"source", &r.Source}, {"target", &r.Target}, {"uid", &r.UID}, {"gid", &r.GID}} {
			if v, vp := m.get(s.key); v != nil {
				*s.to, _ = f.nonEmptyStr(v, vp)
			}
		}
		if r.Source == "" {
			if _, has := m.get("source"); has == "" {
				f.missing(m, "source", "the swarm secret's or config's name")
			}
		}
		if v, vp := m.get("mode"); v != nil {
			r.Mode, _ = f.mode(v, vp)
		}
	}
	return refs
}

// serviceSpec checks the fields of readServiceSpec and the network aliases.
func (ps *Problems) serviceSpec(v *ServiceStep) {
	switch v.Mode {
	case "", ModeReplicated, ModeReplicatedJob:
	case ModeGlobal, ModeGlobalJob:
		if v.Replicas != nil {
			ps.add("replicas", "a %s service runs one task per node: leave replicas out", v.Mode)
		}
		if v.MaxReplicasPerNode != nil {
			ps.add("maxReplicasPerNode", "a %s service runs one task per node already", v.Mode)
		}
	default:
		ps.add("mode", "must be replicated, global, replicated-job or global-job, got %s", quote(v.Mode))
	}
	for _, l := range []struct {
		field string
		m     map[string]string
	}{{"labels", v.Labels}, {"containerLabels", v.ContainerLabels}} {
		if len(l.m) > maxServiceItems {
			ps.add(l.field, "holds %d labels; the limit is %d", len(l.m), maxServiceItems)
		}
		//workflowcheck:ignore sorted right away: the problems do not depend on map order
		for _, k := range slices.Sorted(maps.Keys(l.m)) {
			if k == "" || strings.ContainsAny(k, "\x00\n") {
				ps.add(l.field, "a label key must be one line of text, got %s", quote(k))
			}
		}
	}
	if r := v.Resources; r != nil {
		for _, rv := range []struct {
			field string
			v     *ResourceValues
		}{{"resources.limits", r.Limits}, {"resources.reservations", r.Reservations}} {
			if rv.v == nil {
				continue
			}
			if c := rv.v.CPUs; c != "" {
				if x, err := strconv.ParseFloat(c, 64); err != nil || x < 0 || x > 1024 {
					ps.add(rv.field+".cpus", "must be a number of CPUs between 0 and 1024, such as 0.5, got %s", quote(c))
				}
			}
			if rv.v.MemoryBytes < 0 || rv.v.Pids < 0 {
				ps.add(rv.field, "memory and pids must not be negative")
			}
		}
	}
	if r := v.RestartPolicy; r != nil {
		switch r.Condition {
		case RestartNone, RestartOnFailure, RestartAny:
		default:
			ps.add("restartPolicy.condition", "must be none, on-failure or any, got %s", quote(r.Condition))
		}
		ps.durationRange("restartPolicy.delay", r.Delay, 0, time.Hour)
		ps.durationRange("restartPolicy.window", r.Window, 0, 24*time.Hour)
	}
	ps.durationRange("stopGracePeriod", v.StopGracePeriod, 0, maxStopGrace)
	for _, list := range []struct {
		field string
		refs  []ObjectRef
	}{{"secrets", v.Secrets}, {"configs", v.Configs}} {
		if len(list.refs) > maxServiceItems {
			ps.add(list.field, "lists %d items; the limit is %d", len(list.refs), maxServiceItems)
		}
		for i, r := range list.refs {
			field := indexPath(list.field, i)
			switch {
			case r.Source == "":
				ps.add(field+".source", "is required; the swarm object's name")
			case !dockerName.MatchString(r.Source):
				ps.add(field+".source", "must be a swarm object name (letters, digits and . _ -), got %s", quote(r.Source))
			}
			for _, id := range []struct{ key, v string }{{"uid", r.UID}, {"gid", r.GID}} {
				if id.v != "" && !numericID.MatchString(id.v) {
					ps.add(field+"."+id.key, "must be a numeric id, got %s", quote(id.v))
				}
			}
			if r.Mode > 0o777 {
				ps.add(field+".mode", "must be at most 0777, got %#o", r.Mode)
			}
			if strings.ContainsRune(r.Target, 0) {
				ps.add(field+".target", "must not contain a NUL byte")
			}
		}
	}
	//workflowcheck:ignore sorted right away: the problems do not depend on map order
	for _, name := range slices.Sorted(maps.Keys(v.NetworkAliases)) {
		if !slices.Contains(v.Networks, name) {
			ps.add("networkAliases", "aliases for %s, which is not among networks", quote(name))
		}
	}
	if v.RegistryAuth != nil {
		ps.under("registryAuth", v.RegistryAuth.Normalize())
		ps.workerDir(v.Dir)
	}
}

// ComposeService is the step as a Compose service and the objects it names
// (networks, volumes, secrets and configs that exist: external ones), the input
// of compose.ServiceSpec. Fields the step leaves out are left out here too; the
// activity keeps the service's values for them.
func (v *ServiceStep) ComposeService() (types.ServiceConfig, compose.Refs) {
	svc := types.ServiceConfig{Name: v.Service}
	svc.Image, svc.Entrypoint, svc.Command, svc.WorkingDir, svc.User = v.Image, v.Entrypoint, v.Command, v.Workdir, v.User
	svc.Labels = v.ContainerLabels
	refs := compose.Refs{Networks: types.Networks{}, Volumes: types.Volumes{}, Secrets: types.Secrets{}, Configs: types.Configs{}}
	if v.Env != nil {
		svc.Environment = types.MappingWithEquals{}
		//workflowcheck:ignore sorted right away
		for _, k := range slices.Sorted(maps.Keys(v.Env)) {
			val := v.Env[k]
			svc.Environment[k] = &val
		}
	}
	d := &types.DeployConfig{Mode: v.Mode, Labels: v.Labels}
	if v.Replicas != nil {
		r := int(*v.Replicas)
		d.Replicas = &r
	}
	if r := v.Resources; r != nil {
		d.Resources.Limits, d.Resources.Reservations = composeResource(r.Limits), composeResource(r.Reservations)
	}
	if r := v.RestartPolicy; r != nil {
		d.RestartPolicy = &types.RestartPolicy{Condition: r.Condition, MaxAttempts: r.MaxAttempts,
			Delay: composeDuration(r.Delay), Window: composeDuration(r.Window)}
	}
	d.Placement.Constraints = v.Constraints
	for _, p := range v.Preferences {
		d.Placement.Preferences = append(d.Placement.Preferences, types.PlacementPreferences{Spread: p})
	}
	if v.MaxReplicasPerNode != nil {
		d.Placement.MaxReplicas = *v.MaxReplicasPerNode
	}
	d.UpdateConfig, d.RollbackConfig = composeUpdate(v.Update), composeUpdate(v.Rollback)
	svc.Deploy = d
	if h := v.HealthCheck; h != nil {
		svc.HealthCheck = &types.HealthCheckConfig{Test: h.Test, Interval: composeDuration(h.Interval),
			Timeout: composeDuration(h.Timeout), StartPeriod: composeDuration(h.StartPeriod)}
		if h.Retries > 0 {
			r := uint64(h.Retries)
			svc.HealthCheck.Retries = &r
		}
	}
	svc.StopGracePeriod = composeDuration(v.StopGracePeriod)
	if len(v.Networks) > 0 {
		svc.Networks = map[string]*types.ServiceNetworkConfig{}
		for _, n := range v.Networks {
			svc.Networks[n] = &types.ServiceNetworkConfig{Aliases: v.NetworkAliases[n]}
			refs.Networks[n] = types.NetworkConfig{Name: n, External: true}
		}
	}
	for _, m := range v.Mounts {
		svc.Volumes = append(svc.Volumes, types.ServiceVolumeConfig{Type: m.Type, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
		if (m.Type == "volume" || m.Type == "") && m.Source != "" {
			refs.Volumes[m.Source] = types.VolumeConfig{Name: m.Source, External: true}
		}
	}
	for _, p := range v.Ports {
		svc.Ports = append(svc.Ports, types.ServicePortConfig{Mode: p.Mode, Target: p.Target, Published: strconv.FormatUint(uint64(p.Published), 10), Protocol: p.Protocol})
	}
	for _, r := range v.Secrets {
		svc.Secrets = append(svc.Secrets, types.ServiceSecretConfig(composeRef(r)))
		refs.Secrets[r.Source] = types.SecretConfig{Name: r.Source, External: true}
	}
	for _, r := range v.Configs {
		svc.Configs = append(svc.Configs, types.ServiceConfigObjConfig(composeRef(r)))
		refs.Configs[r.Source] = types.ConfigObjConfig{Name: r.Source, External: true}
	}
	return svc, refs
}

func composeResource(r *ResourceValues) *types.Resource {
	if r == nil {
		return nil
	}
	cpus, _ := strconv.ParseFloat(r.CPUs, 32)
	return &types.Resource{NanoCPUs: types.NanoCPUs(cpus), MemoryBytes: types.UnitBytes(r.MemoryBytes), Pids: r.Pids}
}

func composeDuration(d Duration) *types.Duration {
	if d == 0 {
		return nil
	}
	v := types.Duration(d)
	return &v
}

func composeUpdate(u *UpdatePolicy) *types.UpdateConfig {
	if u == nil {
		return nil
	}
	p := u.Parallelism
	return &types.UpdateConfig{Parallelism: &p, Delay: types.Duration(u.Delay), FailureAction: u.FailureAction,
		Monitor: types.Duration(u.Monitor), MaxFailureRatio: u.MaxFailureRatio, Order: u.Order}
}

func composeRef(r ObjectRef) types.FileReferenceConfig {
	out := types.FileReferenceConfig{Source: r.Source, Target: r.Target, UID: r.UID, GID: r.GID}
	if r.Mode != 0 {
		m := types.FileMode(r.Mode)
		out.Mode = &m
	}
	return out
}

// composeFields maps the Compose path of a compose.FieldError (relative to the
// service) to the step's field: the longest prefix that matches.
var composeFields = []struct{ compose, step string }{
	{"deploy.resources.", "resources."},
	{"deploy.restart_policy", "restartPolicy"},
	{"deploy.replicas", "replicas"},
	{"deploy.mode", "mode"},
	{"deploy.placement.preferences", "placementPreferences"},
	{"deploy.update_config.failure_action", "updateConfig.failureAction"},
	{"deploy.update_config.max_failure_ratio", "updateConfig.maxFailureRatio"},
	{"deploy.update_config", "updateConfig"},
	{"deploy.rollback_config.failure_action", "rollbackConfig.failureAction"},
	{"deploy.rollback_config.max_failure_ratio", "rollbackConfig.maxFailureRatio"},
	{"deploy.rollback_config", "rollbackConfig"},
	{"deploy", ""},
	{"healthcheck", "healthCheck"},
	{"environment.", "env."},
	{"networks", "networks"},
	{"volumes", "mounts"},
	{"restart", "restartPolicy"},
	{"stop_grace_period", "stopGracePeriod"},
}

// StepField is the field of a service step that a compose.FieldError of its
// ComposeService names.
func StepField(composeField string) string {
	for _, m := range composeFields {
		if rest, ok := strings.CutPrefix(composeField, m.compose); ok {
			if m.step == "" {
				return ""
			}
			return m.step + rest
		}
	}
	if i := strings.Index(composeField, "]."); strings.HasPrefix(composeField, "ports[") && i > 0 {
		return composeField[:i+1] // ports[1].published: the entry
	}
	return composeField
}

// checkServiceSpec builds the engine's spec as the activity will (compose.ServiceSpec)
// and reports what it refuses at the step's field.
func (f *file) checkServiceSpec(m *fields, v *ServiceStep, c *stepContext) {
	probe := *v
	if f.r.reportedAt(f.name, m.path) || len(probe.Normalize(Scope{})) > 0 {
		return // one mistake, one message: Normalize says it better
	}
	svc, refs := v.ComposeService()
	_, err := compose.ServiceSpec("", svc, refs)
	for _, fe := range compose.FieldErrors(err) {
		field := StepField(fe.Field)
		if fe.Field == "image" && !v.Create && v.Image == "" {
			continue // updateService keeps the service's image
		}
		f.errorAt(m.locate(field, false), fieldPath(m.path, field), "%s", fe.Msg)
		c.settle(field)
	}
}
