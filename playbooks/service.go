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
const maxServiceItems = 100

var (
	// serviceName is what the engine accepts as a service name.
	serviceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
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
	ImageLoad string            `json:"imageLoad,omitempty"`
	Replicas  *uint64           `json:"replicas,omitempty"`
	Env       map[string]string `json:"env"`
	// Ports are published in host mode (the routing mesh is not used).
	Ports       []ServicePort  `json:"ports"`
	Mounts      []ServiceMount `json:"mounts"`
	Networks    []string       `json:"networks"`
	Constraints []string       `json:"constraints"`
	HealthCheck *HealthCheck   `json:"healthCheck,omitempty"`
	Update      *UpdatePolicy  `json:"updateConfig,omitempty"`
	Rollback    *UpdatePolicy  `json:"rollbackConfig,omitempty"`
}

// ServicePort publishes Target of each task on Published of its node (host mode).
type ServicePort struct {
	Published uint32 `json:"published"`
	Target    uint32 `json:"target"`
	Protocol  string `json:"protocol"` // tcp, udp, sctp
}

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
var serviceFields = []string{"service", "manager", "image", "replicas", "env", "ports", "mounts", "networks",
	"constraints", "healthCheck", "updateConfig", "rollbackConfig"}

// readService reads the fields of a deployService or updateService step.
func readService(f *file, m *fields, s *Step, c *stepContext) {
	v := &ServiceStep{Create: s.Kind == KindDeployService}
	s.Service = v
	if n, p := m.get("service"); n == nil {
		f.missing(m, "service", "name the swarm service")
	} else if name, ok := f.nonEmptyStr(n, p); ok {
		if !serviceName.MatchString(name) {
			f.errorAt(n, p, "must be letters, digits and . _ - (at most 63), starting with a letter or digit, got %s", quote(name))
		}
		v.Service = name
	}
	v.Manager = f.managerRef(m, c)
	if n, p := m.get("image"); n == nil {
		if v.Create {
			f.missing(m, "image", "deployService creates the service when it is missing, and needs its image")
		}
	} else if n.Kind == yaml.MappingNode {
		// image: {name: web:2, load: images/web-2.tar}
		im := f.mapping(n, p)
		if im != nil {
			f.checkKeys(im, "name", "load")
			if in, ip := im.get("name"); in == nil {
				f.missing(im, "name", "the image reference the tarball holds, such as web:2")
			} else {
				v.Image = f.imageRef(in, ip)
			}
			if ln, lp := im.get("load"); ln != nil {
				v.ImageLoad, _ = f.localFile(ln, lp)
			}
		}
	} else {
		v.Image = f.imageRef(n, p)
	}
	if n, p := m.get("replicas"); n != nil {
		if r, ok := f.integer(n, p, 0, 1000); ok {
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
		v.Networks = f.patternList(n, p, dockerName, "a network name")
	}
	if n, p := m.get("constraints"); n != nil {
		v.Constraints = f.patternList(n, p, constraintSpec, "ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE, such as node.role==manager")
	}
	if n, p := m.get("healthCheck"); n != nil {
		v.HealthCheck = f.healthCheck(n, p)
	}
	if n, p := m.get("updateConfig"); n != nil {
		v.Update = f.updatePolicy(n, p, true)
	}
	if n, p := m.get("rollbackConfig"); n != nil {
		v.Rollback = f.updatePolicy(n, p, false)
	}
}

// imageRef reads an image reference.
func (f *file) imageRef(n *yaml.Node, path string) string {
	img, ok := f.nonEmptyStr(n, path)
	if ok && strings.ContainsAny(img, " \t\n") {
		f.errorAt(n, path, "an image reference has no spaces, got %s", quote(img))
	}
	return img
}

// servicePorts reads ports: ["8080:80", "5353:53/udp"].
func (f *file) servicePorts(n *yaml.Node, path string) []ServicePort {
	items, ok := f.list(n, path, `"PUBLISHED:TARGET[/PROTOCOL]" strings`)
	if !ok {
		return nil
	}
	ports := []ServicePort{}
	for i, item := range items {
		p := indexPath(path, i)
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
		if pub < 1 || pub > 65535 || tgt < 1 || tgt > 65535 {
			f.errorAt(item, p, "ports must be between 1 and 65535, got %s", quote(v))
			continue
		}
		proto := sm[3]
		if proto == "" {
			proto = "tcp"
		}
		port := ServicePort{Published: uint32(pub), Target: uint32(tgt), Protocol: proto}
		if slices.ContainsFunc(ports, func(o ServicePort) bool { return o.Published == port.Published && o.Protocol == port.Protocol }) {
			f.errorAt(item, p, "port %d/%s is published twice", pub, proto)
			continue
		}
		ports = append(ports, port)
	}
	return ports
}

// serviceMounts reads mounts: [{type: volume, source: data, target: /data}].
func (f *file) serviceMounts(n *yaml.Node, path string) []ServiceMount {
	items, ok := f.list(n, path, "mounts")
	if !ok {
		return nil
	}
	if len(items) > maxServiceItems {
		f.errorAt(n, path, "lists %d mounts; the limit is %d", len(items), maxServiceItems)
		return nil
	}
	mounts := []ServiceMount{}
	for i, item := range items {
		p := indexPath(path, i)
		m := f.mapping(item, p)
		if m == nil {
			continue
		}
		f.checkKeys(m, "type", "source", "target", "readOnly")
		mt := ServiceMount{Type: "volume"}
		if v, vp := m.get("type"); v != nil {
			if t, ok := f.nonEmptyStr(v, vp); ok {
				if t != "volume" && t != "bind" && t != "tmpfs" {
					f.errorAt(v, vp, "must be volume, bind or tmpfs, got %s", quote(t))
				}
				mt.Type = t
			}
		}
		if v, vp := m.get("source"); v != nil {
			mt.Source, _ = f.nonEmptyStr(v, vp)
			if mt.Type == "bind" && !strings.HasPrefix(mt.Source, "/") {
				f.errorAt(v, vp, "a bind mount's source is an absolute path on the node, got %s", quote(mt.Source))
			}
		} else if mt.Type == "bind" {
			f.missing(m, "source", "a bind mount needs the node's path")
		}
		if v, vp := m.get("target"); v == nil {
			f.missing(m, "target", "the path inside the container")
		} else if t, ok := f.nonEmptyStr(v, vp); ok {
			if !strings.HasPrefix(t, "/") {
				f.errorAt(v, vp, "must be an absolute path inside the container, got %s", quote(t))
			}
			mt.Target = t
		}
		if v, vp := m.get("readOnly"); v != nil {
			mt.ReadOnly, _ = f.boolean(v, vp)
		}
		mounts = append(mounts, mt)
	}
	return mounts
}

// healthCheck reads healthCheck: {test: [CMD, ...], interval, timeout, retries, startPeriod}.
func (f *file) healthCheck(n *yaml.Node, path string) *HealthCheck {
	m := f.mapping(n, path)
	if m == nil {
		return nil
	}
	f.checkKeys(m, "test", "interval", "timeout", "retries", "startPeriod")
	h := &HealthCheck{}
	if v, vp := m.get("test"); v == nil {
		f.missing(m, "test", `such as [CMD, /bin/check] or [CMD-SHELL, "curl -f localhost"], or [NONE] to turn the image's check off`)
	} else if test, ok := f.stringList(v, vp); ok {
		switch {
		case len(test) == 0 || !slices.Contains([]string{"CMD", "CMD-SHELL", "NONE"}, test[0]):
			f.errorAt(v, vp, "must start with CMD, CMD-SHELL or NONE")
		case test[0] != "NONE" && len(test) < 2:
			f.errorAt(v, vp, "%s needs the command after it", test[0])
		case test[0] == "CMD-SHELL" && len(test) != 2:
			f.errorAt(v, vp, "CMD-SHELL takes one shell line")
		}
		h.Test = test
	}
	for _, d := range []struct {
		key string
		to  *Duration
	}{{"interval", &h.Interval}, {"timeout", &h.Timeout}, {"startPeriod", &h.StartPeriod}} {
		if v, vp := m.get(d.key); v != nil {
			x, _ := f.duration(v, vp, time.Millisecond, time.Hour)
			*d.to = Duration(x)
		}
	}
	if v, vp := m.get("retries"); v != nil {
		h.Retries, _ = f.integer(v, vp, 1, 100)
	}
	return h
}

// updatePolicy reads updateConfig or rollbackConfig. The defaults are the engine's:
// parallelism 1, no delay, monitor 5s, failureAction pause, stop-first.
func (f *file) updatePolicy(n *yaml.Node, path string, update bool) *UpdatePolicy {
	m := f.mapping(n, path)
	if m == nil {
		return nil
	}
	f.checkKeys(m, "parallelism", "delay", "monitor", "failureAction", "maxFailureRatio", "order")
	u := &UpdatePolicy{Parallelism: 1, Monitor: Duration(5 * time.Second), FailureAction: FailurePause, Order: OrderStopFirst}
	if v, vp := m.get("parallelism"); v != nil {
		if x, ok := f.integer(v, vp, 0, 1000); ok {
			u.Parallelism = uint64(x)
		}
	}
	if v, vp := m.get("delay"); v != nil {
		d, _ := f.duration(v, vp, 0, time.Hour)
		u.Delay = Duration(d)
	}
	if v, vp := m.get("monitor"); v != nil {
		d, _ := f.duration(v, vp, 0, time.Hour)
		u.Monitor = Duration(d)
	}
	if v, vp := m.get("failureAction"); v != nil {
		if a, ok := f.nonEmptyStr(v, vp); ok {
			switch {
			case a == FailurePause || a == FailureContinue:
			case a == FailureRollback && update:
			case a == FailureRollback:
				f.errorAt(v, vp, "a rollback cannot roll back: must be pause or continue")
			default:
				f.errorAt(v, vp, "must be pause, continue or rollback, got %s", quote(a))
			}
			u.FailureAction = a
		}
	}
	if v, vp := m.get("maxFailureRatio"); v != nil {
		r, err := strconv.ParseFloat(v.Value, 32)
		if v.Kind != yaml.ScalarNode || (v.Tag != "!!float" && v.Tag != "!!int") || err != nil || r < 0 || r > 1 {
			f.errorAt(v, vp, "must be a number between 0 and 1 (the fraction of updated tasks allowed to fail), got %s", describe(v))
		}
		u.MaxFailureRatio = float32(r)
	}
	if v, vp := m.get("order"); v != nil {
		if o, ok := f.nonEmptyStr(v, vp); ok {
			if o != OrderStopFirst && o != OrderStartFirst {
				f.errorAt(v, vp, "must be stop-first or start-first, got %s", quote(o))
			}
			u.Order = o
		}
	}
	return u
}

// patternList reads a list of strings that must each match re; want describes the
// form for the message ("must be WANT, got ...").
func (f *file) patternList(n *yaml.Node, path string, re *regexp.Regexp, want string) []string {
	items, ok := f.stringList(n, path)
	if !ok {
		return nil
	}
	for i, s := range items {
		if !re.MatchString(s) {
			f.errorAt(n.Content[i], indexPath(path, i), "must be %s, got %s", want, quote(s))
		}
	}
	return items
}
