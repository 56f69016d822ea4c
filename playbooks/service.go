package playbooks

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Service update settings.
const (
	FailurePause    = "pause"
	FailureContinue = "continue"
	FailureRollback = "rollback"

	OrderStopFirst  = "stop-first"
	OrderStartFirst = "start-first"
)

// Service limits and patterns.
const (
	maxServiceItems = 100
	maxReplicas     = 1000
	// maxUpdateParallelism bounds updateConfig.parallelism (0: all tasks at once).
	maxUpdateParallelism = 1000
	maxHealthRetries     = 100
)

var (
	// portSpec is PUBLISHED:TARGET[/tcp|udp|sctp].
	portSpec = regexp.MustCompile(`^([0-9]{1,5}):([0-9]{1,5})(?:/(tcp|udp|sctp))?$`)
	// constraintSpec is a placement constraint: node.role==manager, node.labels.zone!=a.
	constraintSpec = regexp.MustCompile(`^[A-Za-z0-9_.-]+ *(==|!=) *[^ ].*$`)
)

// ServiceStep creates (deployService) or updates (updateService) a swarm service
// through a manager and follows the update until it converges, rolls back or
// pauses. Fields left out of the playbook are left as the service has them (nil
// here); an empty list or mapping clears them.
type ServiceStep struct {
	// Create: the step kind is deployService (create the service when missing);
	// updateService refuses a service that does not exist.
	Create  bool   `json:"create"`
	Service string `json:"service"`
	// Manager: as RotateCAStep.Manager; default: the first of the step's hosts
	// whose engine is a reachable manager.
	Manager string `json:"manager,omitempty"`
	Image   string `json:"image,omitempty"`
	// ImageLoad is a `docker save` tarball of Image on the worker's side
	// (absolute path), loaded into every swarm node that lacks the image: no
	// registry needed.
	ImageLoad string `json:"imageLoad,omitempty"`
	// Mode: ModeReplicated (what a new service gets), ModeGlobal (one task per
	// node), ModeReplicatedJob or ModeGlobalJob (tasks run to completion).
	Mode     string            `json:"mode,omitempty"`
	Replicas *uint64           `json:"replicas,omitempty"`
	Env      map[string]string `json:"env"`
	// Entrypoint replaces the image's ENTRYPOINT; Command its CMD (the
	// arguments), as in a Compose file.
	Entrypoint []string `json:"entrypoint"`
	Command    []string `json:"command"`
	Workdir    string   `json:"workdir,omitempty"`
	User       string   `json:"user,omitempty"`
	// Labels are the service's; ContainerLabels each task's container's.
	Labels          map[string]string `json:"labels"`
	ContainerLabels map[string]string `json:"containerLabels"`
	// Ports are published through the routing mesh (mode ingress, Docker's
	// default) or on the node of each task (mode host).
	Ports  []ServicePort  `json:"ports"`
	Mounts []ServiceMount `json:"mounts"`
	// Networks are overlay networks that exist; NetworkAliases gives some of them
	// extra DNS names of the service.
	Networks       []string            `json:"networks"`
	NetworkAliases map[string][]string `json:"networkAliases,omitempty"`
	Constraints    []string            `json:"constraints"`
	// Preferences spread tasks over the values of node attributes
	// (node.labels.zone), in order.
	Preferences        []string          `json:"placementPreferences"`
	MaxReplicasPerNode *uint64           `json:"maxReplicasPerNode,omitempty"`
	Resources          *ServiceResources `json:"resources,omitempty"`
	RestartPolicy      *RestartPolicy    `json:"restartPolicy,omitempty"`
	StopGracePeriod    Duration          `json:"stopGracePeriod,omitempty"`
	// Secrets and Configs are swarm objects that exist (a stack's, or made with
	// docker secret create), mounted as files in each task.
	Secrets     []ObjectRef   `json:"secrets"`
	Configs     []ObjectRef   `json:"configs"`
	HealthCheck *HealthCheck  `json:"healthCheck,omitempty"`
	Update      *UpdatePolicy `json:"updateConfig,omitempty"`
	Rollback    *UpdatePolicy `json:"rollbackConfig,omitempty"`
	// RegistryAuth (with Dir, the playbook's directory, for its passwordFile):
	// the image is pulled with these credentials and its tag resolved to a digest.
	RegistryAuth *RegistryAuth `json:"registryAuth,omitempty"`
	Dir          string        `json:"dir,omitempty"`
}

// ServicePort publishes Target of each task on Published: of every node through
// the routing mesh (mode ingress, the default), or of the task's node (mode host).
type ServicePort struct {
	Published uint32 `json:"published"`
	Target    uint32 `json:"target"`
	Protocol  string `json:"protocol"`       // tcp, udp, sctp
	Mode      string `json:"mode,omitempty"` // PortIngress (default), PortHost
}

// Port publish modes.
const (
	PortIngress = "ingress"
	PortHost    = "host"
)

// ServiceMount is a volume, bind or tmpfs mount of each task.
type ServiceMount struct {
	Type     string `json:"type"` // volume (default), bind, tmpfs
	Source   string `json:"source,omitempty"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// HealthCheck is the container health check of each task.
type HealthCheck struct {
	// Test: ["CMD", argv...], ["CMD-SHELL", "line"] or ["NONE"].
	Test        []string `json:"test"`
	Interval    Duration `json:"interval,omitempty"`
	Timeout     Duration `json:"timeout,omitempty"`
	Retries     int      `json:"retries,omitempty"`
	StartPeriod Duration `json:"startPeriod,omitempty"`
}

// UpdatePolicy is a service's update (or rollback) configuration.
type UpdatePolicy struct {
	Parallelism     uint64   `json:"parallelism"` // tasks at once; 0: all
	Delay           Duration `json:"delay"`
	Monitor         Duration `json:"monitor"` // failure window after each task starts
	FailureAction   string   `json:"failureAction"`
	MaxFailureRatio float32  `json:"maxFailureRatio"`
	Order           string   `json:"order"`
}

// serviceFields are the fields of deployService and updateService.
var serviceFields = []string{"service", "manager", "image", "mode", "replicas", "env", "entrypoint", "command", "workdir",
	"user", "labels", "containerLabels", "ports", "mounts", "networks", "constraints", "placementPreferences",
	"maxReplicasPerNode", "resources", "restartPolicy", "stopGracePeriod", "secrets", "configs", "healthCheck",
	"updateConfig", "rollbackConfig", "registryAuth"}

// readService reads the fields of a deployService or updateService step.
func readService(f *file, m *fields, s *Step, c *stepContext) {
	v := &ServiceStep{Create: s.Kind == KindDeployService}
	s.Service = v
	if n, p := m.get("service"); n != nil {
		v.Service, _ = f.nonEmptyStr(n, p)
	}
	v.Manager = f.managerRef(m)
	if n, p := m.get("image"); n != nil && n.Kind == yaml.MappingNode {
		// image: {name: web:2, load: images/web-2.tar}
		if im := f.mapping(n, p); im != nil {
			f.checkKeys(im, "name", "load")
			if in, ip := im.get("name"); in == nil {
				f.missing(im, "name", "the image reference the tarball holds, such as web:2")
			} else {
				v.Image, _ = f.nonEmptyStr(in, ip)
			}
			if ln, lp := im.get("load"); ln != nil {
				v.ImageLoad, _ = f.localFile(ln, lp)
			}
		}
	} else if n != nil {
		v.Image, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("replicas"); n != nil {
		if r, ok := f.integer(n, p, 0, maxReplicas); ok {
			u := uint64(r)
			v.Replicas = &u
		}
	}
	if n, p := m.get("env"); n != nil {
		if env, ok := f.stringMap(n, p); ok {
			v.Env = env
		}
	}
	if n, p := m.get("ports"); n != nil {
		v.Ports = f.servicePorts(n, p)
	}
	if n, p := m.get("mounts"); n != nil {
		v.Mounts = f.serviceMounts(n, p)
	}
	if n, p := m.get("networks"); n != nil {
		v.Networks, v.NetworkAliases = f.serviceNetworks(n, p)
	}
	if n, p := m.get("constraints"); n != nil {
		v.Constraints, _ = f.stringList(n, p)
	}
	f.readServiceSpec(m, v)
	if n, p := m.get("healthCheck"); n != nil {
		v.HealthCheck = f.healthCheck(n, p)
	}
	if n, p := m.get("updateConfig"); n != nil {
		v.Update = f.updatePolicy(n, p)
	}
	if n, p := m.get("rollbackConfig"); n != nil {
		v.Rollback = f.updatePolicy(n, p)
	}
	if v.RegistryAuth = f.readRegistryAuth(m); v.RegistryAuth != nil {
		v.Dir = f.dir
	}
	f.checkServiceSpec(m, v, c)
}

// normalizeService is the Normalize of the service kinds: the kind decides whether
// the service may be created.
func normalizeService(s *Step, sc Scope) Problems {
	if s.Service == nil {
		return Problems{{Msg: "kind " + s.Kind + " needs service"}}
	}
	s.Service.Create = s.Kind == KindDeployService
	return s.Service.Normalize(sc)
}

// Normalize checks a service step's settings and fills in the protocol of ports
// (tcp) and the type of mounts (volume) that leave them out.
func (v *ServiceStep) Normalize(sc Scope) Problems {
	var ps Problems
	switch {
	case v.Service == "":
		ps.add("service", "is required; name the swarm service")
	case !dockerName.MatchString(v.Service):
		ps.add("service", "must be letters, digits and . _ - (at most 63), starting with a letter or digit, got %s", quote(v.Service))
	}
	sc.inventoryRef(&ps, "manager", v.Manager)
	switch {
	case v.Image == "" && v.Create:
		ps.add("image", "is required; deployService creates the service when it is missing, and needs its image")
	case v.Image == "" && v.ImageLoad != "":
		ps.add("image", "is required with a tarball to load: the image reference the tarball holds, such as web:2")
	case strings.ContainsAny(v.Image, " \t\n"):
		ps.add("image", "an image reference has no spaces, got %s", quote(v.Image))
	}
	ps.workerPath("image.load", v.ImageLoad)
	if v.Replicas != nil && *v.Replicas > maxReplicas {
		ps.add("replicas", "must be between 0 and %d, got %d", maxReplicas, *v.Replicas)
	}
	ps.envNames("env", v.Env)
	ps.servicePorts(v.Ports)
	ps.serviceMounts(v.Mounts)
	ps.serviceSpec(v)
	for _, list := range []struct {
		field string
		items []string
		re    *regexp.Regexp
		want  string
	}{
		{"networks", v.Networks, dockerName, "a network name"},
		{"constraints", v.Constraints, constraintSpec, "ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE, such as node.role==manager"},
		{"placementPreferences", v.Preferences, spreadSpec, "a node attribute to spread over, such as node.labels.zone"},
	} {
		if len(list.items) > maxServiceItems {
			ps.add(list.field, "lists %d items; the limit is %d", len(list.items), maxServiceItems)
		}
		for i, s := range list.items {
			if !list.re.MatchString(s) {
				ps.add(indexPath(list.field, i), "must be %s, got %s", list.want, quote(s))
			}
		}
	}
	if v.HealthCheck != nil {
		ps.under("healthCheck", v.HealthCheck.Normalize())
	}
	if v.Update != nil {
		ps.under("updateConfig", v.Update.Normalize(true))
	}
	if v.Rollback != nil {
		ps.under("rollbackConfig", v.Rollback.Normalize(false))
	}
	return ps
}

// servicePorts reads ports: ["8080:80", "5353:53/udp", {published: 9100, target:
// 9100, mode: host}]. An entry that cannot be read stays in the list, empty, so
// that the others keep their index.
func (f *file) servicePorts(n *yaml.Node, path string) []ServicePort {
	items, ok := f.list(n, path, `"PUBLISHED:TARGET[/PROTOCOL]" strings or {published, target, protocol, mode} mappings`)
	if !ok {
		return nil
	}
	ports := make([]ServicePort, len(items))
	for i, item := range items {
		p := indexPath(path, i)
		if item.Kind == yaml.MappingNode {
			ports[i] = f.portMapping(item, p)
			continue
		}
		v, ok := f.nonEmptyStr(item, p)
		if !ok {
			continue
		}
		sm := portSpec.FindStringSubmatch(v)
		if sm == nil {
			f.errorAt(item, p, `must be "PUBLISHED:TARGET" with an optional /tcp, /udp or /sctp, such as "8080:80", got %s`, quote(v))
			continue
		}
		pub, _ := strconv.Atoi(sm[1])
		tgt, _ := strconv.Atoi(sm[2])
		ports[i] = ServicePort{Published: uint32(pub), Target: uint32(tgt), Protocol: sm[3]}
	}
	return ports
}

// portMapping reads {published, target, protocol, mode}.
func (f *file) portMapping(n *yaml.Node, path string) ServicePort {
	var port ServicePort
	m := f.mapping(n, path)
	if m == nil {
		return port
	}
	f.checkKeys(m, "published", "target", "protocol", "mode")
	for _, k := range []struct {
		key string
		to  *uint32
	}{{"published", &port.Published}, {"target", &port.Target}} {
		if v, vp := m.get(k.key); v != nil {
			x, _ := f.integer(v, vp, 1, 65535)
			*k.to = uint32(x)
		} else {
			f.missing(m, k.key, "a port between 1 and 65535")
		}
	}
	if v, vp := m.get("protocol"); v != nil {
		port.Protocol, _ = f.nonEmptyStr(v, vp)
	}
	if v, vp := m.get("mode"); v != nil {
		port.Mode, _ = f.nonEmptyStr(v, vp)
	}
	return port
}

// servicePorts checks ports: numbers 1..65535, a protocol (default tcp), a mode
// (default ingress), each published port once.
func (ps *Problems) servicePorts(ports []ServicePort) {
	if len(ports) > maxServiceItems {
		ps.add("ports", "lists %d ports; the limit is %d", len(ports), maxServiceItems)
	}
	for i := range ports {
		port, field := &ports[i], indexPath("ports", i)
		if port.Protocol == "" {
			port.Protocol = "tcp"
		}
		if port.Mode == "" {
			port.Mode = PortIngress
		}
		switch {
		case port.Published < 1 || port.Published > 65535 || port.Target < 1 || port.Target > 65535:
			ps.add(field, "ports must be between 1 and 65535, got %d:%d", port.Published, port.Target)
		case port.Protocol != "tcp" && port.Protocol != "udp" && port.Protocol != "sctp":
			ps.add(field, "protocol must be tcp, udp or sctp, got %s", quote(port.Protocol))
		case port.Mode != PortIngress && port.Mode != PortHost:
			ps.add(field+".mode", "must be ingress (the routing mesh, the default) or host (the node of each task), got %s", quote(port.Mode))
		case slices.ContainsFunc(ports[:i], func(o ServicePort) bool { return o.Published == port.Published && o.Protocol == port.Protocol }):
			ps.add(field, "port %d/%s is published twice", port.Published, port.Protocol)
		}
	}
}

// serviceMounts reads mounts: [{type: volume, source: data, target: /data}]. An entry
// that cannot be read stays in the list, empty, so that the others keep their index.
func (f *file) serviceMounts(n *yaml.Node, path string) []ServiceMount {
	items, ok := f.list(n, path, "mounts")
	if !ok {
		return nil
	}
	mounts := make([]ServiceMount, len(items))
	for i, item := range items {
		p := indexPath(path, i)
		m := f.mapping(item, p)
		if m == nil {
			continue
		}
		f.checkKeys(m, "type", "source", "target", "readOnly")
		mt := &mounts[i]
		if v, vp := m.get("type"); v != nil {
			mt.Type, _ = f.nonEmptyStr(v, vp)
		}
		if v, vp := m.get("source"); v != nil {
			mt.Source, _ = f.nonEmptyStr(v, vp)
		}
		if v, vp := m.get("target"); v != nil {
			mt.Target, _ = f.nonEmptyStr(v, vp)
		}
		if v, vp := m.get("readOnly"); v != nil {
			mt.ReadOnly, _ = f.boolean(v, vp)
		}
	}
	return mounts
}

// serviceMounts checks mounts: a type (default volume), a bind mount's source on the
// node, an absolute target in the container.
func (ps *Problems) serviceMounts(mounts []ServiceMount) {
	if len(mounts) > maxServiceItems {
		ps.add("mounts", "lists %d mounts; the limit is %d", len(mounts), maxServiceItems)
	}
	for i := range mounts {
		mt, field := &mounts[i], indexPath("mounts", i)
		if mt.Type == "" {
			mt.Type = "volume"
		}
		switch mt.Type {
		case "volume", "bind", "tmpfs":
		default:
			ps.add(field+".type", "must be volume, bind or tmpfs, got %s", quote(mt.Type))
		}
		switch {
		case mt.Type == "bind" && mt.Source == "":
			ps.add(field+".source", "is required; a bind mount needs the node's path")
		case mt.Type == "bind" && !strings.HasPrefix(mt.Source, "/"):
			ps.add(field+".source", "a bind mount's source is an absolute path on the node, got %s", quote(mt.Source))
		}
		switch {
		case mt.Target == "":
			ps.add(field+".target", "is required; the path inside the container")
		case !strings.HasPrefix(mt.Target, "/"):
			ps.add(field+".target", "must be an absolute path inside the container, got %s", quote(mt.Target))
		}
	}
}

// healthCheck reads healthCheck: {test: [CMD, ...], interval, timeout, retries, startPeriod}.
func (f *file) healthCheck(n *yaml.Node, path string) *HealthCheck {
	m := f.mapping(n, path)
	if m == nil {
		return nil
	}
	f.checkKeys(m, "test", "interval", "timeout", "retries", "startPeriod")
	h := &HealthCheck{}
	if v, vp := m.get("test"); v != nil {
		h.Test, _ = f.stringList(v, vp)
	}
	for _, d := range []struct {
		key string
		to  *Duration
	}{{"interval", &h.Interval}, {"timeout", &h.Timeout}, {"startPeriod", &h.StartPeriod}} {
		if v, vp := m.get(d.key); v != nil {
			*d.to = f.nonZeroDuration(v, vp, "leave it out for the image's setting")
		}
	}
	if v, vp := m.get("retries"); v != nil {
		h.Retries, _ = f.integer(v, vp, 1, maxHealthRetries)
	}
	return h
}

// Normalize checks a health check. Zero durations and retries leave the image's.
func (h *HealthCheck) Normalize() Problems {
	var ps Problems
	switch t := h.Test; {
	case len(t) == 0:
		ps.add("test", `is required; such as [CMD, /bin/check] or [CMD-SHELL, "curl -f localhost"], or [NONE] to turn the image's check off`)
	case !slices.Contains([]string{"CMD", "CMD-SHELL", "NONE"}, t[0]):
		ps.add("test", "must start with CMD, CMD-SHELL or NONE")
	case t[0] != "NONE" && len(t) < 2:
		ps.add("test", "%s needs the command after it", t[0])
	case t[0] == "CMD-SHELL" && len(t) != 2:
		ps.add("test", "CMD-SHELL takes one shell line")
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"interval", h.Interval}, {"timeout", h.Timeout}, {"startPeriod", h.StartPeriod}} {
		if d.v != 0 {
			ps.durationRange(d.key, d.v, time.Millisecond, time.Hour)
		}
	}
	if h.Retries != 0 {
		ps.intRange("retries", h.Retries, 1, maxHealthRetries)
	}
	return ps
}

// updatePolicy reads updateConfig or rollbackConfig. The defaults are the engine's:
// parallelism 1, no delay, monitor 5s, failureAction pause, stop-first.
func (f *file) updatePolicy(n *yaml.Node, path string) *UpdatePolicy {
	m := f.mapping(n, path)
	if m == nil {
		return nil
	}
	f.checkKeys(m, "parallelism", "delay", "monitor", "failureAction", "maxFailureRatio", "order")
	u := &UpdatePolicy{Parallelism: 1, Monitor: Duration(5 * time.Second), FailureAction: FailurePause, Order: OrderStopFirst}
	if v, vp := m.get("parallelism"); v != nil {
		if x, ok := f.integer(v, vp, 0, maxUpdateParallelism); ok {
			u.Parallelism = uint64(x)
		}
	}
	if v, vp := m.get("delay"); v != nil {
		d, _ := f.anyDuration(v, vp)
		u.Delay = Duration(d)
	}
	if v, vp := m.get("monitor"); v != nil {
		d, _ := f.anyDuration(v, vp)
		u.Monitor = Duration(d)
	}
	if v, vp := m.get("failureAction"); v != nil {
		u.FailureAction, _ = f.nonEmptyStr(v, vp)
	}
	if v, vp := m.get("maxFailureRatio"); v != nil {
		r, err := strconv.ParseFloat(v.Value, 32)
		if v.Kind != yaml.ScalarNode || (v.Tag != "!!float" && v.Tag != "!!int") || err != nil {
			f.errorAt(v, vp, "must be a number between 0 and 1 (the fraction of updated tasks allowed to fail), got %s", describe(v))
		}
		u.MaxFailureRatio = float32(r)
	}
	if v, vp := m.get("order"); v != nil {
		u.Order, _ = f.nonEmptyStr(v, vp)
	}
	return u
}

// Normalize checks an update policy (update: of updateConfig, or else of
// rollbackConfig, which cannot roll back). Empty settings leave the engine's.
func (u *UpdatePolicy) Normalize(update bool) Problems {
	var ps Problems
	if u.Parallelism > maxUpdateParallelism {
		ps.add("parallelism", "must be between 0 and %d, got %d", maxUpdateParallelism, u.Parallelism)
	}
	ps.durationRange("delay", u.Delay, 0, time.Hour)
	ps.durationRange("monitor", u.Monitor, 0, time.Hour)
	switch a := u.FailureAction; {
	case a == "" || a == FailurePause || a == FailureContinue:
	case a == FailureRollback && update:
	case a == FailureRollback:
		ps.add("failureAction", "a rollback cannot roll back: must be pause or continue")
	default:
		ps.add("failureAction", "must be pause, continue or rollback, got %s", quote(a))
	}
	if r := u.MaxFailureRatio; r < 0 || r > 1 {
		ps.add("maxFailureRatio", "must be a number between 0 and 1 (the fraction of updated tasks allowed to fail), got %s",
			strconv.FormatFloat(float64(r), 'g', -1, 32))
	}
	switch u.Order {
	case "", OrderStopFirst, OrderStartFirst:
	default:
		ps.add("order", "must be stop-first or start-first, got %s", quote(u.Order))
	}
	return ps
}
