package compose

import (
	"cmp"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
)

// The labels by which `docker stack ls/ps/rm` know a stack's objects.
const (
	LabelNamespace = "com.docker.stack.namespace"
	LabelImage     = "com.docker.stack.image"
)

// Namespace is the stack an object belongs to. Its objects are named
// STACK_name and labelled com.docker.stack.namespace=STACK, as the Docker CLI
// does. The zero Namespace converts a standalone service (a deployService
// step): names as written, no stack labels, no extra network alias.
type Namespace string

// Scope is the swarm name of a stack object called name in the Compose file.
func (ns Namespace) Scope(name string) string {
	if ns == "" {
		return name
	}
	return string(ns) + "_" + name
}

// Labels are l with the namespace label added (a copy).
func (ns Namespace) Labels(l map[string]string) map[string]string {
	out := maps.Clone(l)
	if ns != "" {
		if out == nil {
			out = map[string]string{}
		}
		out[LabelNamespace] = string(ns)
	}
	return out
}

// objectName is the swarm name of a network, volume, secret or config: the name
// the file gives it (compose-go fills in STACK_key), else the scoped key.
func (ns Namespace) objectName(key, name string) string {
	if name != "" {
		return name
	}
	return ns.Scope(key)
}

// Refs are the top-level objects a service refers to by key. A caller that
// builds a ServiceConfig without a Compose file (deployService) lists the
// existing swarm networks it names as external networks.
type Refs struct {
	Networks types.Networks
	Volumes  types.Volumes
	Secrets  types.Secrets
	Configs  types.Configs
}

// Service modes, as deploy.mode writes them.
const (
	ModeReplicated    = "replicated"
	ModeGlobal        = "global"
	ModeReplicatedJob = "replicated-job"
	ModeGlobalJob     = "global-job"
)

// ServiceSpec converts one service as docker/cli's cli/compose/convert.Service
// does, with these differences: every value is checked (a bad restart
// condition, port mode or CPU count is an error here, the engine's later); a
// bind mount gets BindOptions only when it sets a propagation; restart: "no"
// is condition none (docker/cli drops it, which makes swarm restart always).
//
// Names in the result are swarm names, not IDs: networks are Target by name,
// secrets and configs by SecretName/ConfigName with no ID (ResolveObjects fills
// them in). Errors are FieldErrors joined, with paths relative to the service.
func ServiceSpec(ns Namespace, svc types.ServiceConfig, refs Refs) (swarm.ServiceSpec, error) {
	var fe fieldErrors
	deploy := types.DeployConfig{}
	if svc.Deploy != nil {
		deploy = *svc.Deploy
	}
	if svc.Image == "" {
		fe.add("image", "a swarm service needs an image (build one with a buildImage step and name its tag here)")
	}
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: ns.Scope(svc.Name), Labels: ns.Labels(deploy.Labels)},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:           svc.Image,
				Command:         svc.Entrypoint,
				Args:            svc.Command,
				Hostname:        svc.Hostname,
				Hosts:           extraHosts(svc.ExtraHosts),
				DNSConfig:       dnsConfig(svc),
				Healthcheck:     healthcheck(svc.HealthCheck, &fe),
				Env:             environment(svc.Environment, &fe),
				Labels:          ns.Labels(svc.Labels),
				Dir:             svc.WorkingDir,
				User:            svc.User,
				Mounts:          mounts(ns, svc.Volumes, refs.Volumes, &fe),
				StopGracePeriod: durationPtr(svc.StopGracePeriod),
				StopSignal:      svc.StopSignal,
				TTY:             svc.Tty,
				OpenStdin:       svc.StdinOpen,
				Secrets:         secretRefs(ns, svc.Secrets, refs.Secrets, &fe),
				Configs:         configRefs(ns, svc.Configs, refs.Configs, &fe),
				ReadOnly:        svc.ReadOnly,
				Privileges:      &swarm.Privileges{},
				Isolation:       container.Isolation(svc.Isolation),
				Init:            svc.Init,
				Sysctls:         nilIfEmpty(svc.Sysctls),
				CapabilityAdd:   capabilities(svc.CapAdd),
				CapabilityDrop:  capabilities(svc.CapDrop),
				Ulimits:         ulimits(svc.Ulimits),
				OomScoreAdj:     svc.OomScoreAdj,
			},
			Resources:     resources(deploy.Resources, &fe),
			RestartPolicy: restartPolicy(svc.Restart, deploy.RestartPolicy, &fe),
			Placement: &swarm.Placement{
				Constraints: deploy.Placement.Constraints,
				Preferences: preferences(deploy.Placement.Preferences, &fe),
				MaxReplicas: deploy.Placement.MaxReplicas,
			},
			Networks: networks(ns, svc, refs.Networks, &fe),
		},
		EndpointSpec:   endpoint(deploy.EndpointMode, svc.Ports, &fe),
		UpdateConfig:   updateConfig(deploy.UpdateConfig, "deploy.update_config", true, &fe),
		RollbackConfig: updateConfig(deploy.RollbackConfig, "deploy.rollback_config", false, &fe),
	}
	if ns != "" {
		spec.Labels[LabelImage] = svc.Image
	}
	if svc.Logging != nil {
		spec.TaskTemplate.LogDriver = &swarm.Driver{Name: svc.Logging.Driver, Options: nilIfEmpty(svc.Logging.Options)}
	}
	spec.Mode = serviceMode(deploy.Mode, deploy.Replicas, &fe)
	return spec, fe.err()
}

func nilIfEmpty[M ~map[string]string](m M) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return map[string]string(m)
}

func durationPtr(d *types.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	v := time.Duration(*d)
	return &v
}

// extraHosts are "IP host" lines, sorted (compose-go keeps them in a map).
func extraHosts(h types.HostsList) []string {
	var out []string
	for host, ips := range h {
		for _, ip := range ips {
			out = append(out, ip+" "+host)
		}
	}
	slices.Sort(out)
	return out
}

func dnsConfig(svc types.ServiceConfig) *swarm.DNSConfig {
	if len(svc.DNS) == 0 && len(svc.DNSSearch) == 0 && len(svc.DNSOpts) == 0 {
		return nil
	}
	return &swarm.DNSConfig{Nameservers: svc.DNS, Search: svc.DNSSearch, Options: svc.DNSOpts}
}

func healthcheck(h *types.HealthCheckConfig, fe *fieldErrors) *container.HealthConfig {
	if h == nil {
		return nil
	}
	if h.Disable {
		if len(h.Test) > 0 {
			fe.add("healthcheck.disable", "test and disable cannot be set together")
		}
		return &container.HealthConfig{Test: []string{"NONE"}}
	}
	if len(h.Test) > 0 && !slices.Contains([]string{"CMD", "CMD-SHELL", "NONE"}, h.Test[0]) {
		fe.add("healthcheck.test", "must start with CMD, CMD-SHELL or NONE (or be a string, run by the shell)")
	}
	out := &container.HealthConfig{Test: h.Test}
	for _, d := range []struct {
		field string
		from  *types.Duration
		to    *time.Duration
	}{{"interval", h.Interval, &out.Interval}, {"timeout", h.Timeout, &out.Timeout},
		{"start_period", h.StartPeriod, &out.StartPeriod}, {"start_interval", h.StartInterval, &out.StartInterval}} {
		if d.from != nil {
			if *d.from < 0 {
				fe.add("healthcheck."+d.field, "must not be negative")
			}
			*d.to = time.Duration(*d.from)
		}
	}
	if h.Retries != nil {
		out.Retries = int(*h.Retries)
	}
	return out
}

// environment is KEY=VALUE, sorted. A variable with no value would reach the
// container unset, so it is refused.
func environment(env types.MappingWithEquals, fe *fieldErrors) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if env[k] == nil {
			fe.add("environment."+k, "has no value, and the playbook's vars have no %s: write %s=VALUE", k, k)
			continue
		}
		out = append(out, k+"="+*env[k])
	}
	return out
}

// capabilities are written as the engine stores them: CAP_ prefixed, upper
// case, sorted.
func capabilities(caps []string) []string {
	var out []string
	for _, c := range caps {
		c = strings.ToUpper(c)
		if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

func ulimits(u map[string]*types.UlimitsConfig) []*container.Ulimit {
	var out []*container.Ulimit
	for _, name := range slices.Sorted(maps.Keys(u)) {
		l := u[name]
		if l == nil {
			continue
		}
		soft, hard := int64(l.Soft), int64(l.Hard)
		if l.Single != 0 {
			soft, hard = int64(l.Single), int64(l.Single)
		}
		out = append(out, &container.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
	return out
}

// nanoCPUs converts a CPU count exactly (0.1 is 100000000, not the float32's
// 100000001), as docker/cli's opts.ParseCPUs does from the string.
func nanoCPUs(v types.NanoCPUs, field string, fe *fieldErrors) int64 {
	s := strconv.FormatFloat(float64(v), 'f', -1, 32)
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() < 0 {
		fe.add(field, "must be a number of CPUs of at least 0, got %s", s)
		return 0
	}
	n := r.Mul(r, big.NewRat(1e9, 1))
	if !n.IsInt() || !n.Num().IsInt64() {
		fe.add(field, "%s CPUs is too precise (at most 9 decimals) or too large", s)
		return 0
	}
	return n.Num().Int64()
}

func resources(r types.Resources, fe *fieldErrors) *swarm.ResourceRequirements {
	out := &swarm.ResourceRequirements{}
	if l := r.Limits; l != nil {
		out.Limits = &swarm.Limit{NanoCPUs: nanoCPUs(l.NanoCPUs, "deploy.resources.limits.cpus", fe),
			MemoryBytes: memory(l.MemoryBytes, "deploy.resources.limits.memory", fe), Pids: l.Pids}
		if l.Pids < 0 {
			fe.add("deploy.resources.limits.pids", "must not be negative")
		}
	}
	if rs := r.Reservations; rs != nil {
		out.Reservations = &swarm.Resources{NanoCPUs: nanoCPUs(rs.NanoCPUs, "deploy.resources.reservations.cpus", fe),
			MemoryBytes: memory(rs.MemoryBytes, "deploy.resources.reservations.memory", fe)}
		for i, g := range rs.GenericResources {
			if g.DiscreteResourceSpec == nil {
				fe.add(fmt.Sprintf("deploy.resources.reservations.generic_resources[%d]", i), "needs discrete_resource_spec")
				continue
			}
			out.Reservations.GenericResources = append(out.Reservations.GenericResources, swarm.GenericResource{
				DiscreteResourceSpec: &swarm.DiscreteGenericResource{Kind: g.DiscreteResourceSpec.Kind, Value: g.DiscreteResourceSpec.Value}})
		}
	}
	if out.Limits != nil && out.Reservations != nil {
		if l, rs := out.Limits.MemoryBytes, out.Reservations.MemoryBytes; l > 0 && rs > l {
			fe.add("deploy.resources.reservations.memory", "reserves more memory than the limit")
		}
		if l, rs := out.Limits.NanoCPUs, out.Reservations.NanoCPUs; l > 0 && rs > l {
			fe.add("deploy.resources.reservations.cpus", "reserves more CPUs than the limit")
		}
	}
	return out
}

func memory(b types.UnitBytes, field string, fe *fieldErrors) int64 {
	if b < 0 {
		fe.add(field, "must not be negative")
	}
	return int64(b)
}

// Restart conditions, as the engine names them.
var restartConditions = []string{"none", "on-failure", "any"}

func restartPolicy(restart string, p *types.RestartPolicy, fe *fieldErrors) *swarm.RestartPolicy {
	if p != nil {
		if restart != "" {
			fe.add("restart", "set only deploy.restart_policy: restart is docker compose's older form of it")
		}
		if p.Condition != "" && !slices.Contains(restartConditions, p.Condition) {
			fe.add("deploy.restart_policy.condition", "must be none, on-failure or any, got %s", quote(p.Condition))
		}
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyCondition(p.Condition), Delay: durationPtr(p.Delay),
			MaxAttempts: p.MaxAttempts, Window: durationPtr(p.Window)}
	}
	if restart == "" {
		return nil
	}
	name, count, hasCount := strings.Cut(restart, ":")
	var attempts *uint64
	if hasCount {
		n, err := strconv.ParseUint(count, 10, 64)
		if err != nil || name != "on-failure" {
			fe.add("restart", "must be no, always, unless-stopped, on-failure or on-failure:N, got %s", quote(restart))
			return nil
		}
		if n > 0 {
			attempts = &n
		}
	}
	switch name {
	case "no":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone}
	case "always", "unless-stopped":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}
	case "on-failure":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure, MaxAttempts: attempts}
	}
	fe.add("restart", "must be no, always, unless-stopped, on-failure or on-failure:N, got %s", quote(restart))
	return nil
}

func preferences(ps []types.PlacementPreferences, fe *fieldErrors) []swarm.PlacementPreference {
	var out []swarm.PlacementPreference
	for i, p := range ps {
		if p.Spread == "" {
			fe.add(fmt.Sprintf("deploy.placement.preferences[%d]", i), "needs spread: a node attribute, such as node.labels.zone")
			continue
		}
		out = append(out, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: p.Spread}})
	}
	return out
}

// networks attaches the service to its networks, sorted by target. In a stack
// each user-defined network also gets the service's Compose name as an alias,
// as docker/cli adds it (use_service_name_alias: false leaves it out).
func networks(ns Namespace, svc types.ServiceConfig, nets types.Networks, fe *fieldErrors) []swarm.NetworkAttachmentConfig {
	attach := svc.Networks
	if len(attach) == 0 && ns != "" {
		attach = map[string]*types.ServiceNetworkConfig{"default": nil}
	}
	var out []swarm.NetworkAttachmentConfig
	for _, key := range slices.Sorted(maps.Keys(attach)) {
		n, ok := nets[key]
		if !ok && key != "default" {
			fe.add("networks."+key, "undefined network: declare it in the top-level networks")
			continue
		}
		a := swarm.NetworkAttachmentConfig{Target: ns.objectName(key, n.Name)}
		alias := ns != ""
		if c := attach[key]; c != nil {
			a.Aliases = slices.Clone(c.Aliases)
			a.DriverOpts = nilIfEmpty(c.DriverOpts)
			if c.UseServiceNameAlias != nil && !*c.UseServiceNameAlias {
				alias = false
			}
		}
		if alias && container.NetworkMode(a.Target).IsUserDefined() {
			a.Aliases = append(a.Aliases, svc.Name)
		}
		out = append(out, a)
	}
	slices.SortStableFunc(out, func(a, b swarm.NetworkAttachmentConfig) int { return cmp.Compare(a.Target, b.Target) })
	return out
}

// Port protocols and publish modes.
var (
	portProtocols = []string{"tcp", "udp", "sctp"}
	publishModes  = []string{string(swarm.PortConfigPublishModeIngress), string(swarm.PortConfigPublishModeHost)}
)

// endpoint publishes the ports, ingress (the routing mesh, Docker's default) or
// host as written, sorted as docker/cli sorts them.
func endpoint(mode string, ports []types.ServicePortConfig, fe *fieldErrors) *swarm.EndpointSpec {
	mode = strings.ToLower(mode)
	if mode != "" && mode != string(swarm.ResolutionModeVIP) && mode != string(swarm.ResolutionModeDNSRR) {
		fe.add("deploy.endpoint_mode", "must be vip or dnsrr, got %s", quote(mode))
	}
	out := &swarm.EndpointSpec{Mode: swarm.ResolutionMode(mode), Ports: []swarm.PortConfig{}}
	for i, p := range ports {
		field := fmt.Sprintf("ports[%d]", i)
		pc, ok := portConfig(p, field, fe)
		if !ok {
			continue
		}
		if mode == string(swarm.ResolutionModeDNSRR) && pc.PublishMode == swarm.PortConfigPublishModeIngress && pc.PublishedPort != 0 {
			fe.add(field, "a port published through the routing mesh (ingress) needs endpoint_mode vip; publish it in mode host")
		}
		for _, o := range out.Ports {
			if o.PublishedPort != 0 && o.PublishedPort == pc.PublishedPort && o.Protocol == pc.Protocol {
				fe.add(field, "port %d/%s is published twice", pc.PublishedPort, pc.Protocol)
			}
		}
		out.Ports = append(out.Ports, pc)
	}
	slices.SortFunc(out.Ports, comparePorts)
	return out
}

// comparePorts is the order of moby's PortConfig.Compare: published, target,
// protocol, mode.
func comparePorts(a, b swarm.PortConfig) int {
	return cmp.Or(cmp.Compare(a.PublishedPort, b.PublishedPort), cmp.Compare(a.TargetPort, b.TargetPort),
		cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.PublishMode, b.PublishMode))
}

// PortConfig converts one published port (a FieldError names the part of it
// that is wrong: published, mode, ...).
func PortConfig(p types.ServicePortConfig) (swarm.PortConfig, error) {
	var fe fieldErrors
	pc, _ := portConfig(p, "", &fe)
	for _, e := range fe {
		e.(*FieldError).Field = strings.TrimPrefix(e.(*FieldError).Field, ".")
	}
	return pc, fe.err()
}

func portConfig(p types.ServicePortConfig, field string, fe *fieldErrors) (swarm.PortConfig, bool) {
	ok := true
	bad := func(sub, format string, args ...any) {
		fe.add(field+sub, format, args...)
		ok = false
	}
	mode := p.Mode
	if mode == "" {
		mode = string(swarm.PortConfigPublishModeIngress)
	}
	if !slices.Contains(publishModes, mode) {
		bad(".mode", "must be ingress (the routing mesh, the default) or host, got %s", quote(p.Mode))
	}
	proto := strings.ToLower(p.Protocol)
	if proto == "" {
		proto = "tcp"
	}
	if !slices.Contains(portProtocols, proto) {
		bad(".protocol", "must be tcp, udp or sctp, got %s", quote(p.Protocol))
	}
	if p.Target == 0 || p.Target > 65535 {
		bad(".target", "must be a port between 1 and 65535, got %d", p.Target)
	}
	var published uint64
	if p.Published != "" {
		n, err := strconv.ParseUint(p.Published, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			bad(".published", "must be a port between 1 and 65535 (a range needs as many target ports), got %s", quote(p.Published))
		}
		published = n
	}
	if p.HostIP != "" {
		bad("", "swarm publishes a port on every address of the node: leave out the host address %s", quote(p.HostIP))
	}
	return swarm.PortConfig{Name: p.Name, Protocol: swarm.PortConfigProtocol(proto), TargetPort: p.Target,
		PublishedPort: uint32(published), PublishMode: swarm.PortConfigPublishMode(mode)}, ok
}

func serviceMode(mode string, replicas *int, fe *fieldErrors) swarm.ServiceMode {
	var n *uint64
	if replicas != nil {
		if *replicas < 0 {
			fe.add("deploy.replicas", "must not be negative, got %d", *replicas)
		} else {
			v := uint64(*replicas)
			n = &v
		}
	}
	switch mode {
	case ModeReplicated, "":
		return swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: n}}
	case ModeGlobal, ModeGlobalJob:
		if replicas != nil {
			fe.add("deploy.replicas", "a %s service runs one task per node: leave replicas out", mode)
		}
		if mode == ModeGlobal {
			return swarm.ServiceMode{Global: &swarm.GlobalService{}}
		}
		return swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}}
	case ModeReplicatedJob:
		return swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: n, TotalCompletions: n}}
	}
	fe.add("deploy.mode", "must be replicated, global, replicated-job or global-job, got %s", quote(mode))
	return swarm.ServiceMode{}
}

// Update failure actions and orders.
var (
	failureActions = []string{swarm.UpdateFailureActionPause, swarm.UpdateFailureActionContinue, swarm.UpdateFailureActionRollback}
	updateOrders   = []string{swarm.UpdateOrderStopFirst, swarm.UpdateOrderStartFirst}
)

func updateConfig(u *types.UpdateConfig, field string, update bool, fe *fieldErrors) *swarm.UpdateConfig {
	if u == nil {
		return nil
	}
	out := &swarm.UpdateConfig{Parallelism: 1, Delay: time.Duration(u.Delay), FailureAction: u.FailureAction,
		Monitor: time.Duration(u.Monitor), MaxFailureRatio: u.MaxFailureRatio, Order: u.Order}
	if u.Parallelism != nil {
		out.Parallelism = *u.Parallelism
	}
	switch {
	case u.FailureAction == "":
	case !slices.Contains(failureActions, u.FailureAction):
		fe.add(field+".failure_action", "must be pause, continue or rollback, got %s", quote(u.FailureAction))
	case !update && u.FailureAction == swarm.UpdateFailureActionRollback:
		fe.add(field+".failure_action", "a rollback cannot roll back: must be pause or continue")
	}
	if u.Order != "" && !slices.Contains(updateOrders, u.Order) {
		fe.add(field+".order", "must be stop-first or start-first, got %s", quote(u.Order))
	}
	if u.MaxFailureRatio < 0 || u.MaxFailureRatio > 1 {
		fe.add(field+".max_failure_ratio", "must be between 0 and 1, got %v", u.MaxFailureRatio)
	}
	if u.Delay < 0 || u.Monitor < 0 {
		fe.add(field, "delay and monitor must not be negative")
	}
	return out
}
