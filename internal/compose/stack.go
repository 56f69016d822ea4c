package compose

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// Stack is a loaded stack as swarm objects. It holds names and references only:
// no content of a secret, config, env or label file.
type Stack struct {
	Name     string    `json:"name"`
	Files    []string  `json:"files"` // every Compose file read, root-relative, in order
	Services []Service `json:"services"`
	Networks []Network `json:"networks"`
	Volumes  []Volume  `json:"volumes"`
	Secrets  []Object  `json:"secrets"`
	Configs  []Object  `json:"configs"`
}

// Service is one service of the stack.
type Service struct {
	Key  string            `json:"key"` // its name in the Compose file
	Spec swarm.ServiceSpec `json:"spec"`
}

// Network is a network the stack's services attach to. External networks must
// exist (scope swarm); the others are created with Create.
type Network struct {
	Key      string                `json:"key"`
	Name     string                `json:"name"`
	External bool                  `json:"external,omitempty"`
	Create   network.CreateOptions `json:"create"`
}

// Volume is a named volume of the stack. Swarm creates it on each node a task
// mounting it runs on, from the mount's options; it is listed for teardown.
type Volume struct {
	Key        string            `json:"key"`
	Name       string            `json:"name"`
	External   bool              `json:"external,omitempty"`
	Driver     string            `json:"driver,omitempty"`
	DriverOpts map[string]string `json:"driverOpts,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// Object is a secret or a config. An external one must exist; the others are
// made from Source, which the caller resolves when it creates the object
// (ReadSource, Digest).
type Object struct {
	Key        string            `json:"key"`
	Name       string            `json:"name"`
	External   bool              `json:"external,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Templating *swarm.Driver     `json:"templating,omitempty"`
	Source     Source            `json:"source"`
}

// Source is where an object's content comes from, by reference: a file inside
// the root (root-relative) or an environment variable of the worker.
type Source struct {
	File string `json:"file,omitempty"`
	Env  string `json:"env,omitempty"`
}

// SecretSpec is the spec to create the secret with, named name (the object's
// Name, or a VersionedName).
func (o Object) SecretSpec(name string, data []byte) swarm.SecretSpec {
	return swarm.SecretSpec{Annotations: swarm.Annotations{Name: name, Labels: maps.Clone(o.Labels)}, Data: data,
		Templating: o.Templating}
}

// ConfigSpec is the spec to create the config with, named name.
func (o Object) ConfigSpec(name string, data []byte) swarm.ConfigSpec {
	return swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name, Labels: maps.Clone(o.Labels)}, Data: data,
		Templating: o.Templating}
}

// objectNamePattern is swarmkit's rule for secret and config names.
var objectNamePattern = regexp.MustCompile(`^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`)

// Name limits of the engine.
const (
	maxObjectName  = 64
	maxServiceName = 63
)

// check is what compose-go leaves to the caller once its consistency check is
// off: references to undefined objects, services without an image, values
// with no source. Each with its line.
func (l *load) check(p *types.Project) {
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		svc := p.Services[name]
		sp := []string{"services", name}
		if len(Namespace(l.opts.Stack).Scope(name)) > maxServiceName {
			l.errAt(sp, "the swarm service name %s is longer than %d characters", Namespace(l.opts.Stack).Scope(name), maxServiceName)
		}
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind {
				if r, inside := l.rel(v.Source); inside {
					l.errAt(append(sp, "volumes"), "the bind mount of %s names a directory of the worker (%s): write the node's absolute path", quote(v.Target), r)
				}
			}
		}
	}
	for _, kind := range []string{"secrets", "configs"} {
		objs := fileObjects(p.Configs)
		if kind == "secrets" {
			objs = fileObjects(p.Secrets)
		}
		for _, key := range slices.Sorted(maps.Keys(objs)) {
			o := objs[key]
			op := []string{kind, key}
			name := Namespace(l.opts.Stack).objectName(key, o.Name)
			sources := 0
			for _, set := range []bool{o.File != "", o.Environment != "", bool(o.External)} {
				if set {
					sources++
				}
			}
			switch {
			case sources == 0:
				l.errAt(op, "needs file (a file under the playbook directory), environment (a variable of the worker) or external: true")
			case sources > 1:
				l.errAt(op, "give one of file, environment and external: true")
			case len(name) > maxObjectName || !objectNamePattern.MatchString(name):
				l.errAt(op, "the swarm name %s must be at most %d letters, digits, - _ and . (starting and ending with a letter or digit)", quote(name), maxObjectName)
			}
			if o.File != "" {
				if r, ok := l.rel(o.File); !ok || !l.sc.objects[r] {
					l.errAt(append(op, "file"), "%s", outside(o.File))
				}
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(p.Networks)) {
		n := p.Networks[key]
		if !n.External && n.Driver != "" && n.Driver != "overlay" {
			l.errAt([]string{"networks", key, "driver"}, "a stack's networks span the swarm: the driver must be overlay, got %s", quote(n.Driver))
		}
		if n.External && (n.Driver != "" || len(n.DriverOpts) > 0 || len(n.Ipam.Config) > 0 || n.Ipam.Driver != "") {
			l.errAt([]string{"networks", key}, "an external network exists already: it takes no driver, driver_opts or ipam")
		}
	}
	for _, key := range slices.Sorted(maps.Keys(p.Volumes)) {
		if v := p.Volumes[key]; v.External && (v.Driver != "" || len(v.DriverOpts) > 0) {
			l.errAt([]string{"volumes", key}, "an external volume exists already: it takes no driver or driver_opts")
		}
	}
}

// convert turns the checked model into the stack's swarm objects.
func (l *load) convert(p *types.Project) *Stack {
	ns := Namespace(l.opts.Stack)
	st := &Stack{Name: l.opts.Stack, Services: []Service{}, Networks: []Network{}, Volumes: []Volume{},
		Secrets: []Object{}, Configs: []Object{}}
	for _, s := range l.sc.sources {
		st.Files = append(st.Files, s.rel)
	}
	refs := Refs{Networks: p.Networks, Volumes: p.Volumes, Secrets: p.Secrets, Configs: p.Configs}
	used := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		svc := p.Services[name]
		spec, err := ServiceSpec(ns, svc, refs)
		for _, fe := range FieldErrors(err) {
			l.errAt(append([]string{"services", name}, splitErrorPath(fe.Field)...), "%s", fe.Msg)
		}
		st.Services = append(st.Services, Service{Key: name, Spec: spec})
		for key := range svc.Networks {
			used[key] = true
		}
		if len(svc.Networks) == 0 {
			used["default"] = true
		}
	}
	for _, key := range slices.Sorted(maps.Keys(p.Networks)) {
		if used[key] {
			st.Networks = append(st.Networks, l.network(ns, key, p.Networks[key]))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(p.Volumes)) {
		v := p.Volumes[key]
		vol := Volume{Key: key, Name: ns.objectName(key, v.Name), External: bool(v.External)}
		if !v.External {
			vol.Driver, vol.DriverOpts, vol.Labels = v.Driver, nilIfEmpty(v.DriverOpts), ns.Labels(v.Labels)
		}
		st.Volumes = append(st.Volumes, vol)
	}
	secrets, configs := fileObjects(p.Secrets), fileObjects(p.Configs)
	for _, key := range slices.Sorted(maps.Keys(secrets)) {
		st.Secrets = append(st.Secrets, l.object(ns, key, secrets[key]))
	}
	for _, key := range slices.Sorted(maps.Keys(configs)) {
		st.Configs = append(st.Configs, l.object(ns, key, configs[key]))
	}
	return st
}

func (l *load) network(ns Namespace, key string, n types.NetworkConfig) Network {
	out := Network{Key: key, Name: ns.objectName(key, n.Name), External: bool(n.External)}
	if n.External {
		return out
	}
	out.Create = network.CreateOptions{Driver: "overlay", Labels: ns.Labels(n.Labels), Options: nilIfEmpty(n.DriverOpts),
		Internal: n.Internal, Attachable: n.Attachable, EnableIPv4: n.EnableIPv4, EnableIPv6: n.EnableIPv6}
	if n.Ipam.Driver != "" || len(n.Ipam.Config) > 0 || len(n.Ipam.Options) > 0 {
		out.Create.IPAM = &network.IPAM{Driver: n.Ipam.Driver, Options: nilIfEmpty(n.Ipam.Options)}
		for i, c := range n.Ipam.Config {
			if c == nil {
				continue
			}
			if c.Subnet == "" {
				l.errAt([]string{"networks", key, "ipam", "config", fmt.Sprint(i)}, "needs a subnet, such as 10.20.0.0/24")
			}
			out.Create.IPAM.Config = append(out.Create.IPAM.Config, network.IPAMConfig{Subnet: c.Subnet,
				IPRange: c.IPRange, Gateway: c.Gateway, AuxAddress: nilIfEmpty(c.AuxiliaryAddresses)})
		}
	}
	return out
}

func (l *load) object(ns Namespace, key string, o types.FileObjectConfig) Object {
	out := Object{Key: key, Name: ns.objectName(key, o.Name), External: bool(o.External)}
	if o.External {
		return out
	}
	out.Labels = ns.Labels(o.Labels)
	if o.TemplateDriver != "" {
		out.Templating = &swarm.Driver{Name: o.TemplateDriver}
	}
	switch {
	case o.File != "":
		out.Source.File, _ = l.rel(o.File)
	case o.Environment != "":
		// compose-go copies a playbook var of that name into the content: the
		// source is the worker's variable, read when the object is created.
		out.Source.Env = o.Environment
	}
	return out
}

// VersionedName is name with a suffix from the content's digest ("sha256:hex"),
// the name a rotated secret or config gets: swarm objects cannot change, so new
// content is a new object. It is an error when the result is too long.
func VersionedName(name, digest string) (string, error) {
	hex := strings.TrimPrefix(digest, "sha256:")
	if len(hex) < 12 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%s is not a sha256 digest", quote(digest))
	}
	v := name + "-" + hex[:12]
	if len(v) > maxObjectName {
		return "", fmt.Errorf("%s with its digest suffix is longer than %d characters: give the object a shorter name", quote(name), maxObjectName)
	}
	return v, nil
}
