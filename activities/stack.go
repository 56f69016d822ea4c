package activities

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/compose"
	"github.com/clusterflow/clusterflow/internal/workerfs"
	"github.com/clusterflow/clusterflow/playbooks"
)

// This file holds the activities of the DeployStack procedure. LoadStack reads
// the Compose files on the worker; the others act through a manager, each one
// reading first and acting only on a difference, so a retry (or a re-run) finds
// its work done. Secrets and configs are read on the worker by the activity that
// creates them: only their names and digests leave it.

// Labels clusterflow gives the secrets and configs it makes for a stack, beside
// the stack's namespace label.
const (
	// LabelObject is the object's name in the stack (STACK_key), without the
	// digest suffix its engine name has.
	LabelObject = "io.clusterflow.object"
	// LabelDigest is the sha256 of its content.
	LabelDigest = "io.clusterflow.digest"
)

// Kinds of stack objects.
const (
	ObjectSecret = "secret"
	ObjectConfig = "config"
)

// LoadStackRequest names a stack's files.
type LoadStackRequest struct {
	Stack playbooks.StackStep `json:"stack"`
}

// StackPlan is a stack loaded on the worker: its swarm objects, and the digest of
// each secret and config that has a source.
type StackPlan struct {
	Stack   compose.Stack `json:"stack"`
	Objects []ObjectPlan  `json:"objects"`
}

// ObjectPlan is a secret or config of the stack with its digest: the name of the
// engine object that holds its content is Name with the digest's suffix.
type ObjectPlan struct {
	Kind     string `json:"kind"` // ObjectSecret, ObjectConfig
	Key      string `json:"key"`
	Name     string `json:"name"`
	External bool   `json:"external,omitempty"`
	Digest   string `json:"digest,omitempty"`
	// EngineName is Name with the digest's suffix (compose.VersionedName); for an
	// external object, Name.
	EngineName string `json:"engineName"`
}

// LoadStack reads and converts the stack's Compose files (internal/compose, rooted
// at the step's dir) and digests the content of its secrets and configs. A bad
// file is final.
func (s *Swarm) LoadStack(ctx context.Context, req LoadStackRequest) (StackPlan, error) {
	v := req.Stack
	if ps := v.Normalize(playbooks.Scope{}); len(ps) > 0 {
		return StackPlan{}, invalidInput("stack: " + ps.Error())
	}
	if err := s.rem.workerFile("the step's dir", v.Dir, workerfs.Content); err != nil {
		return StackPlan{}, err
	}
	st, err := compose.Load(ctx, compose.LoadOptions{Root: v.Dir, Files: v.Compose, Stack: v.Stack, Vars: v.Vars})
	if err != nil {
		if ctx.Err() != nil {
			return StackPlan{}, ctx.Err()
		}
		return StackPlan{}, invalidInput("stack " + v.Stack + ": " + err.Error())
	}
	plan := StackPlan{Stack: *st, Objects: []ObjectPlan{}}
	for _, kind := range []string{ObjectSecret, ObjectConfig} {
		objs := st.Configs
		if kind == ObjectSecret {
			objs = st.Secrets
		}
		for _, o := range objs {
			p := ObjectPlan{Kind: kind, Key: o.Key, Name: o.Name, External: o.External, EngineName: o.Name}
			if !o.External {
				if p.Digest, err = compose.Digest(v.Dir, o.Source, s.env); err != nil {
					return StackPlan{}, invalidInput(fmt.Sprintf("stack %s: %s %s: %v", v.Stack, kind, o.Key, err))
				}
				if p.EngineName, err = compose.VersionedName(o.Name, p.Digest); err != nil {
					return StackPlan{}, invalidInput(fmt.Sprintf("stack %s: %s %s: %v", v.Stack, kind, o.Key, err))
				}
			}
			plan.Objects = append(plan.Objects, p)
		}
	}
	return plan, nil
}

// StackNetworksRequest asks for a stack's networks.
type StackNetworksRequest struct {
	Manager  remote.Host       `json:"manager"`
	Networks []compose.Network `json:"networks"`
}

// StackNetworks are a stack's networks as the engine has them.
type StackNetworks struct {
	IDs     map[string]string `json:"ids"` // swarm name -> ID
	Created []string          `json:"created,omitempty"`
}

// EnsureStackNetworks creates the stack's overlay networks that are missing and
// checks the others: an external one must exist; one of the stack that exists
// with other options is refused (networks cannot change in place).
func (s *Swarm) EnsureStackNetworks(ctx context.Context, req StackNetworksRequest) (StackNetworks, error) {
	m := req.Manager
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return StackNetworks{}, err
	}
	defer cli.Close()
	out := StackNetworks{IDs: map[string]string{}}
	for _, n := range req.Networks {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		got, err := cli.NetworkInspect(actx, n.Name, network.InspectOptions{Scope: "swarm"})
		cancel()
		switch {
		case err == nil:
			if diff := networkDiff(got, n); len(diff) > 0 {
				return StackNetworks{}, swarmConflict(m, "network %s exists with %s; a network cannot be changed in place: remove the stack (removeStack) or the network, or name another",
					n.Name, strings.Join(diff, ", "))
			}
			out.IDs[n.Name] = got.ID
			continue
		case !cerrdefs.IsNotFound(err):
			return StackNetworks{}, apiFailure(ctx, m, "look up network "+n.Name, err)
		case n.External:
			return StackNetworks{}, serviceSpecRefused(m, "external network %s does not exist on the swarm: create it first (swarmInit networks)", n.Name)
		}
		opts := n.Create
		opts.Scope = "swarm"
		actx, cancel = context.WithTimeout(ctx, apiTimeout)
		resp, err := cli.NetworkCreate(actx, n.Name, opts)
		cancel()
		if err != nil {
			if cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "already exists") {
				return StackNetworks{}, swarmAPI(m, "network %s was created meanwhile: try again", n.Name)
			}
			return StackNetworks{}, specFailure(ctx, m, "create network "+n.Name, err)
		}
		out.IDs[n.Name] = resp.ID
		out.Created = append(out.Created, n.Name)
	}
	return out, nil
}

// networkDiff names what a stack network that exists has other than the file says.
func networkDiff(got network.Inspect, want compose.Network) []string {
	var diff []string
	if got.Scope != "swarm" {
		diff = append(diff, "scope "+got.Scope+" (not swarm)")
	}
	if want.External {
		return diff
	}
	c := want.Create
	if got.Driver != "overlay" {
		diff = append(diff, "driver "+got.Driver)
	}
	if got.Attachable != c.Attachable {
		diff = append(diff, fmt.Sprintf("attachable %t", got.Attachable))
	}
	if got.Internal != c.Internal {
		diff = append(diff, fmt.Sprintf("internal %t", got.Internal))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Options)) {
		if v, ok := got.Options[k]; !ok || v != c.Options[k] {
			diff = append(diff, "no driver option "+k)
		}
	}
	if c.IPAM != nil {
		for _, want := range c.IPAM.Config {
			if !slices.ContainsFunc(got.IPAM.Config, func(g network.IPAMConfig) bool { return g.Subnet == want.Subnet }) {
				diff = append(diff, "another subnet than "+want.Subnet)
			}
		}
	}
	if ns := c.Labels[compose.LabelNamespace]; ns != "" && got.Labels[compose.LabelNamespace] != ns {
		diff = append(diff, "no label "+compose.LabelNamespace+"="+ns+" (it is not the stack's)")
	}
	return diff
}

// StackObjectsRequest asks for a stack's secrets and configs.
type StackObjectsRequest struct {
	Manager remote.Host `json:"manager"`
	Stack   string      `json:"stack"`
	// Dir is the step's dir, where file sources are read.
	Dir string `json:"dir"`
	// Objects are the stack's secrets and configs (from the StackPlan's Stack), by
	// reference; Plans their digests as LoadStack read them.
	Objects []compose.Object `json:"objects"`
	Kinds   []string         `json:"kinds"` // the kind of each of Objects
	Plans   []ObjectPlan     `json:"plans"`
}

// StackObject is a secret or config of the stack as the engine has it.
type StackObject struct {
	Kind       string `json:"kind"`
	Key        string `json:"key"`
	Name       string `json:"name"`       // the name the service specs write (STACK_key)
	EngineName string `json:"engineName"` // the engine's (Name-DIGEST)
	ID         string `json:"id"`
	Digest     string `json:"digest,omitempty"`
	External   bool   `json:"external,omitempty"`
	// Created: this content was new, so a new object was made (a first deploy or a
	// rotation); the services that use it are updated to it.
	Created bool `json:"created,omitempty"`
}

// EnsureStackObjects makes sure an engine object holds each secret's and
// config's content: one named with the content's digest exists already, or is
// created now from the source (read here, on the worker, and sent to the engine
// only). An external object must exist. The content never leaves this activity.
func (s *Swarm) EnsureStackObjects(ctx context.Context, req StackObjectsRequest) ([]StackObject, error) {
	m := req.Manager
	if len(req.Kinds) != len(req.Objects) || len(req.Plans) != len(req.Objects) {
		return nil, invalidInput("stack objects: objects, kinds and plans differ in length")
	}
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	out := []StackObject{}
	for i, o := range req.Objects {
		kind, plan := req.Kinds[i], req.Plans[i]
		so := StackObject{Kind: kind, Key: o.Key, Name: o.Name, EngineName: plan.EngineName, Digest: plan.Digest, External: o.External}
		id, labels, err := s.inspectObject(ctx, m, cli, kind, plan.EngineName)
		switch {
		case err != nil:
			return nil, err
		case id != "" && !o.External && labels[LabelDigest] != "" && labels[LabelDigest] != plan.Digest:
			return nil, swarmConflict(m, "%s %s exists with another content than its name says: remove it", kind, plan.EngineName)
		case id != "":
			so.ID = id
		case o.External:
			return nil, serviceSpecRefused(m, "external %s %s does not exist on the swarm: create it first (docker %s create)", kind, o.Name, kind)
		default:
			if so.ID, err = s.createObject(ctx, m, cli, req.Dir, kind, o, plan); err != nil {
				return nil, err
			}
			so.Created = true
		}
		out = append(out, so)
	}
	return out, nil
}

// inspectObject returns the ID and labels of the secret or config named name, or
// "" when there is none.
func (s *Swarm) inspectObject(ctx context.Context, m remote.Host, cli *client.Client, kind, name string) (string, map[string]string, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	var (
		id     string
		labels map[string]string
		err    error
	)
	if kind == ObjectSecret {
		var sec swarm.Secret
		sec, _, err = cli.SecretInspectWithRaw(actx, name)
		id, labels = sec.ID, sec.Spec.Labels
	} else {
		var cfg swarm.Config
		cfg, _, err = cli.ConfigInspectWithRaw(actx, name)
		id, labels = cfg.ID, cfg.Spec.Labels
	}
	switch {
	case cerrdefs.IsNotFound(err):
		return "", nil, nil
	case err != nil:
		return "", nil, apiFailure(ctx, m, "look up "+kind+" "+name, err)
	}
	return id, labels, nil
}

// createObject reads an object's content from its source, checks it still has the
// digest LoadStack saw, and creates the engine object. Errors never carry the
// content.
func (s *Swarm) createObject(ctx context.Context, m remote.Host, cli *client.Client, dir, kind string, o compose.Object, plan ObjectPlan) (string, error) {
	if err := s.rem.workerFile("the step's dir", dir, workerfs.Content); err != nil {
		return "", err
	}
	data, err := compose.ReadSource(dir, o.Source, s.env)
	if err != nil {
		return "", invalidInput(fmt.Sprintf("%s %s: %v", kind, o.Key, err))
	}
	if compose.ContentDigest(data) != plan.Digest {
		return "", invalidInput(fmt.Sprintf("%s %s changed on the worker while the step ran: run the step again", kind, o.Key))
	}
	labels := map[string]string{LabelObject: o.Name, LabelDigest: plan.Digest}
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	var id string
	if kind == ObjectSecret {
		spec := o.SecretSpec(plan.EngineName, data)
		maps.Copy(spec.Labels, labels)
		var resp swarm.SecretCreateResponse
		resp, err = cli.SecretCreate(actx, spec)
		id = resp.ID
	} else {
		spec := o.ConfigSpec(plan.EngineName, data)
		maps.Copy(spec.Labels, labels)
		var resp swarm.ConfigCreateResponse
		resp, err = cli.ConfigCreate(actx, spec)
		id = resp.ID
	}
	clear(data)
	if err != nil {
		if cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "already exists") {
			return "", swarmAPI(m, "%s %s was created meanwhile: try again", kind, plan.EngineName)
		}
		return "", specFailure(ctx, m, "create "+kind+" "+plan.EngineName, err)
	}
	return id, nil
}

// ApplyStackServiceRequest asks for one service of a stack.
type ApplyStackServiceRequest struct {
	Manager remote.Host     `json:"manager"`
	Service compose.Service `json:"service"`
	// Networks and Objects are the stack's, as EnsureStackNetworks and
	// EnsureStackObjects left them; other references are looked up by name.
	Networks     map[string]string       `json:"networks"`
	Objects      []StackObject           `json:"objects"`
	RegistryAuth *playbooks.RegistryAuth `json:"registryAuth,omitempty"`
	Dir          string                  `json:"dir,omitempty"`
}

// StackServiceApplied is what ApplyStackService did, and the spec the service had
// before (nil when it was created or left alone): what a rollback of the stack
// returns it to.
type StackServiceApplied struct {
	ServiceApplied
	Before *swarm.ServiceSpec `json:"before,omitempty"`
}

// ApplyStackService creates the service or updates it to the file's whole spec,
// unless the engine holds that spec already (specDifferences).
func (s *Swarm) ApplyStackService(ctx context.Context, req ApplyStackServiceRequest) (StackServiceApplied, error) {
	m, want := req.Manager, req.Service.Spec
	if want.Name == "" || want.TaskTemplate.ContainerSpec == nil {
		return StackServiceApplied{}, invalidInput("stack service: no name or container spec")
	}
	auth, err := s.encodedAuth(req.Dir, req.RegistryAuth)
	if err != nil {
		return StackServiceApplied{}, err
	}
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return StackServiceApplied{}, err
	}
	defer cli.Close()
	nets := slices.Clone(want.TaskTemplate.Networks)
	for i, n := range nets {
		if id, ok := req.Networks[n.Target]; ok {
			nets[i].Target = id
		}
	}
	want.TaskTemplate.Networks = nets
	if err := s.resolveRefs(ctx, m, cli, &want, req.Objects); err != nil {
		return StackServiceApplied{}, err
	}
	cs := *want.TaskTemplate.ContainerSpec
	if cs.Image, err = s.imageFor(ctx, m, cli, cs.Image, auth); err != nil {
		return StackServiceApplied{}, err
	}
	want.TaskTemplate.ContainerSpec = &cs
	want = withSpecDefaults(want)
	applied, before, err := s.applySpec(ctx, m, cli, applyTarget{name: want.Name, create: true, auth: auth, diff: specDifferences,
		want: func(*swarm.Service) (swarm.ServiceSpec, error) { return want, nil }})
	return StackServiceApplied{ServiceApplied: applied, Before: before}, err
}

// RollbackStackServiceRequest asks for a service to go back to its spec from
// before a step: Before, or, when the step created it (Before nil), no service.
type RollbackStackServiceRequest struct {
	Manager   remote.Host        `json:"manager"`
	ServiceID string             `json:"serviceId"`
	Name      string             `json:"name"`
	Before    *swarm.ServiceSpec `json:"before,omitempty"`
}

// RollbackStackService updates the service back to Before (nothing is sent when it
// has that spec already), or removes a service the step created.
func (s *Swarm) RollbackStackService(ctx context.Context, req RollbackStackServiceRequest) (ServiceApplied, error) {
	m := req.Manager
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return ServiceApplied{}, err
	}
	defer cli.Close()
	if req.Before == nil {
		removed, err := s.removeService(ctx, m, cli, req.ServiceID)
		if err != nil {
			return ServiceApplied{}, err
		}
		msg := "removed (the step created it)"
		if !removed {
			msg = "gone already"
		}
		return ServiceApplied{ServiceID: req.ServiceID, Changed: removed, Message: msg}, nil
	}
	before := *req.Before
	applied, _, err := s.applySpec(ctx, m, cli, applyTarget{name: req.ServiceID, diff: specDifferences,
		missing: func() error {
			return serviceNotFound(fmt.Sprintf("service %s was removed meanwhile: nothing to roll back", req.Name))
		},
		want: func(*swarm.Service) (swarm.ServiceSpec, error) { return before, nil }})
	if applied.Changed {
		applied.Message = "rolled back: " + strings.TrimPrefix(applied.Message, "updated: ")
	}
	return applied, err
}

// removeService removes a service by ID or name; false when there was none.
func (s *Swarm) removeService(ctx context.Context, m remote.Host, cli *client.Client, id string) (bool, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	err := cli.ServiceRemove(actx, id)
	switch {
	case cerrdefs.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, apiFailure(ctx, m, "remove service "+id, err)
	}
	return true, nil
}

// StackCleanupRequest asks for the stack's leftovers to be removed.
type StackCleanupRequest struct {
	Manager remote.Host `json:"manager"`
	Stack   string      `json:"stack"`
	// Services are the services the files have (swarm names); with Prune, the
	// stack's others are removed.
	Services []string `json:"services"`
	// Keep are the IDs of the secrets and configs to keep; Names the files'
	// objects ("secret/STACK_key"). Another object of the stack made for one of
	// Names (an old version, or one made by a step that was rolled back) is removed
	// once no service uses it; with Prune, also objects of names the files no
	// longer have.
	Keep  []string `json:"keep"`
	Names []string `json:"names"`
	Prune bool     `json:"prune,omitempty"`
}

// StackCleanup is what was removed.
type StackCleanup struct {
	Services []string `json:"services,omitempty"`
	Secrets  []string `json:"secrets,omitempty"`
	Configs  []string `json:"configs,omitempty"`
	// Error is why the cleanup stopped (the workflow's note; the next run goes on).
	Error string `json:"error,omitempty"`
}

// Text sums up the cleanup: "service a; secret b-1234" ("" when nothing).
func (c StackCleanup) Text() string {
	var parts []string
	for _, l := range []struct {
		what  string
		names []string
	}{{"service", c.Services}, {"secret", c.Secrets}, {"config", c.Configs}} {
		for _, n := range l.names {
			parts = append(parts, l.what+" "+n)
		}
	}
	if c.Error != "" {
		parts = append(parts, "(cleanup stopped: "+c.Error+")")
	}
	return strings.Join(parts, ", ")
}

// CleanupStack removes, with Prune, the stack's services that the files no longer
// have, then the secrets and configs of the stack that nothing uses any more: old
// versions of a rotated object (and, with Prune, objects the files dropped).
// External objects and objects without clusterflow's labels are left alone.
func (s *Swarm) CleanupStack(ctx context.Context, req StackCleanupRequest) (StackCleanup, error) {
	m := req.Manager
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return StackCleanup{}, err
	}
	defer cli.Close()
	var out StackCleanup
	stackFilter := filters.NewArgs(filters.Arg("label", compose.LabelNamespace+"="+req.Stack))
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	services, err := cli.ServiceList(actx, swarm.ServiceListOptions{Filters: stackFilter})
	cancel()
	if err != nil {
		return out, apiFailure(ctx, m, "list the services of stack "+req.Stack, err)
	}
	slices.SortFunc(services, func(a, b swarm.Service) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
	if req.Prune {
		for _, svc := range services {
			if slices.Contains(req.Services, svc.Spec.Name) {
				continue
			}
			if _, err := s.removeService(ctx, m, cli, svc.ID); err != nil {
				return out, err
			}
			out.Services = append(out.Services, svc.Spec.Name)
		}
	}
	inUse, err := objectsInUse(ctx, m, cli)
	if err != nil {
		return out, err
	}
	keep, names := map[string]bool{}, map[string]bool{}
	for _, id := range req.Keep {
		keep[id] = true
	}
	for _, n := range req.Names {
		names[n] = true
	}
	removable := func(kind, id, name string, labels map[string]string) bool {
		base := labels[LabelObject]
		switch {
		case keep[id] || inUse[id] || base == "":
			return false
		case names[kind+"/"+base]:
			return true // an old version of an object the files have
		}
		return req.Prune
	}
	actx, cancel = context.WithTimeout(ctx, apiTimeout)
	secrets, err := cli.SecretList(actx, swarm.SecretListOptions{Filters: stackFilter})
	cancel()
	if err != nil {
		return out, apiFailure(ctx, m, "list the secrets of stack "+req.Stack, err)
	}
	for _, sec := range secrets {
		if removable(ObjectSecret, sec.ID, sec.Spec.Name, sec.Spec.Labels) {
			if removed, err := removeObject(ctx, m, cli, ObjectSecret, sec.ID, true); err != nil {
				return out, err
			} else if removed {
				out.Secrets = append(out.Secrets, sec.Spec.Name)
			}
		}
	}
	actx, cancel = context.WithTimeout(ctx, apiTimeout)
	configs, err := cli.ConfigList(actx, swarm.ConfigListOptions{Filters: stackFilter})
	cancel()
	if err != nil {
		return out, apiFailure(ctx, m, "list the configs of stack "+req.Stack, err)
	}
	for _, cfg := range configs {
		if removable(ObjectConfig, cfg.ID, cfg.Spec.Name, cfg.Spec.Labels) {
			if removed, err := removeObject(ctx, m, cli, ObjectConfig, cfg.ID, true); err != nil {
				return out, err
			} else if removed {
				out.Configs = append(out.Configs, cfg.Spec.Name)
			}
		}
	}
	slices.Sort(out.Secrets)
	slices.Sort(out.Configs)
	return out, nil
}

// objectsInUse are the IDs of the secrets and configs some service's spec names.
func objectsInUse(ctx context.Context, m remote.Host, cli *client.Client) (map[string]bool, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	all, err := cli.ServiceList(actx, swarm.ServiceListOptions{})
	if err != nil {
		return nil, apiFailure(ctx, m, "list the services", err)
	}
	used := map[string]bool{}
	for _, svc := range all {
		if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
			for _, r := range cs.Secrets {
				used[r.SecretID] = true
			}
			for _, r := range cs.Configs {
				used[r.ConfigID] = true
			}
		}
	}
	return used, nil
}

// removeObject removes a secret or config; false when it was not there, or, with
// inUseOK, when the engine refuses because a service or task still uses it (the
// next run removes it).
func removeObject(ctx context.Context, m remote.Host, cli *client.Client, kind, id string, inUseOK bool) (bool, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	var err error
	if kind == ObjectSecret {
		err = cli.SecretRemove(actx, id)
	} else {
		err = cli.ConfigRemove(actx, id)
	}
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	case strings.Contains(err.Error(), "in use") && inUseOK:
		return false, nil
	case strings.Contains(err.Error(), "in use"):
		return false, swarmAPI(m, "%s %s is still in use: %s", kind, short(id), engineMessage(err))
	}
	return false, apiFailure(ctx, m, "remove "+kind+" "+short(id), err)
}
