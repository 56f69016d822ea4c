package activities

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/compose"
	"github.com/clusterflow/clusterflow/playbooks"
)

// This file holds the activities of the DeployService procedure: ApplyService
// starts a service's creation or update (idempotently: it compares the wanted spec
// with the service's first), WatchService only reads, so a retry after a worker
// was killed picks the watch up where it was.

// Outcomes of a service update, as WatchService and DeployService report them.
const (
	ServiceCompleted  = "completed"   // converged on the wanted spec
	ServiceUnchanged  = "unchanged"   // the spec was as wanted already, and tasks run
	ServiceRolledBack = "rolled-back" // the update failed and the engine rolled it back
	ServicePaused     = "paused"      // the update (or its rollback) paused on failures
	// ServiceTaskFailed: a task that runs once (a job, restart condition none)
	// failed, so the service cannot converge.
	ServiceTaskFailed = "failed"
)

// ApplyServiceRequest asks for a service as the step describes it.
type ApplyServiceRequest struct {
	Manager remote.Host           `json:"manager"`
	Service playbooks.ServiceStep `json:"service"`
}

// ServiceApplied is what ApplyService did.
type ServiceApplied struct {
	ServiceID string `json:"serviceId"`
	Created   bool   `json:"created,omitempty"`
	Changed   bool   `json:"changed,omitempty"`
	Message   string `json:"message"`
	// Since is when the service object last changed before this update, on the
	// engine's clock: an UpdateStatus that started before it is an earlier
	// update's. Zero when nothing was updated.
	Since time.Time `json:"since,omitzero"`
	// Monitor is the update's failure window (the engine's default 5s when unset).
	Monitor  playbooks.Duration `json:"monitor"`
	Replicas uint64             `json:"replicas"`
	// Mode is the service's mode (playbooks.ModeGlobal, ...; "" for replicated).
	Mode string `json:"mode,omitempty"`
	// RunsOnce: the tasks run to completion (a job, or restart condition none):
	// a task that completed counts as done.
	RunsOnce bool `json:"runsOnce,omitempty"`
}

// ApplyService creates the service (deployService) or updates it to the wanted
// spec, unless its spec is that already. Fields the step leaves out keep the
// service's values. A retry after an attempt that did the update finds the spec
// equal and returns what that attempt did (kept in the heartbeat details).
func (s *Swarm) ApplyService(ctx context.Context, req ApplyServiceRequest) (ServiceApplied, error) {
	m, want := req.Manager, req.Service
	if want.Service == "" {
		return ServiceApplied{}, invalidInput("service: the service name is empty")
	}
	svc, refs := want.ComposeService()
	full, err := compose.ServiceSpec("", svc, refs)
	if fes := compose.FieldErrors(err); len(fes) > 0 {
		var msgs []string
		for _, fe := range fes {
			if fe.Field == "image" && !want.Create {
				continue // updateService keeps the service's image
			}
			msgs = append(msgs, playbooks.StepField(fe.Field)+": "+fe.Msg)
		}
		if len(msgs) > 0 {
			return ServiceApplied{}, invalidInput("service " + want.Service + ": " + strings.Join(msgs, "; "))
		}
	}
	auth, err := s.encodedAuth(want.Dir, want.RegistryAuth)
	if err != nil {
		return ServiceApplied{}, err
	}
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return ServiceApplied{}, err
	}
	defer cli.Close()
	if err := s.resolveRefs(ctx, m, cli, &full, nil); err != nil {
		return ServiceApplied{}, err
	}
	if full.TaskTemplate.ContainerSpec.Image, err = s.imageFor(ctx, m, cli, want.Image, auth); err != nil {
		return ServiceApplied{}, err
	}
	applied, _, err := s.applySpec(ctx, m, cli, applyTarget{
		name: want.Service, create: want.Create, auth: auth, diff: specDiff,
		missing: func() error {
			return serviceNotFound(fmt.Sprintf(
				"service %s does not exist on the swarm of %s: updateService changes a service that exists; deployService creates it", want.Service, m.Name))
		},
		want: func(cur *swarm.Service) (swarm.ServiceSpec, error) {
			if cur == nil {
				return serviceSpec(swarm.ServiceSpec{Annotations: swarm.Annotations{Name: want.Service}}, want, full)
			}
			return serviceSpec(cur.Spec, want, full)
		},
	})
	return applied, err
}

// applyTarget is one service brought to a wanted spec by applySpec.
type applyTarget struct {
	name    string
	create  bool         // create it when it does not exist
	missing func() error // the error when it does not exist and create is false
	// want is the spec wanted, given the service as it is (nil: it does not exist).
	want func(cur *swarm.Service) (swarm.ServiceSpec, error)
	// diff names the differences that matter; none: nothing is sent.
	diff func(cur, want swarm.ServiceSpec) []string
	auth string // X-Registry-Auth, or ""
}

// applySpec creates or updates a service to the spec t wants, unless it has it
// already, and returns what it did and the spec the service had before (nil when
// it was created or left alone). A retry after an attempt that made the change
// finds the spec equal and returns what that attempt did (kept in the heartbeat
// details), so a service is never updated twice for one step.
func (s *Swarm) applySpec(ctx context.Context, m remote.Host, cli *client.Client, t applyTarget) (ServiceApplied, *swarm.ServiceSpec, error) {
	var earlier struct {
		ServiceApplied
		Before *swarm.ServiceSpec `json:"before,omitempty"`
	}
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &earlier)
	}
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		svc, _, err := cli.ServiceInspectWithRaw(actx, t.name, swarm.ServiceInspectOptions{})
		cancel()
		switch {
		case cerrdefs.IsNotFound(err):
			if !t.create {
				return ServiceApplied{}, nil, t.missing()
			}
			spec, err := t.want(nil)
			if err != nil {
				return ServiceApplied{}, nil, err
			}
			applied := appliedOf(spec, ServiceApplied{Created: true, Changed: true, Message: "created"})
			recordHeartbeat(ctx, applied)
			actx, cancel := context.WithTimeout(ctx, apiTimeout)
			resp, err := cli.ServiceCreate(actx, spec, swarm.ServiceCreateOptions{EncodedRegistryAuth: t.auth})
			cancel()
			if err != nil {
				if (cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "already exists")) && attempt < 5 {
					continue // created meanwhile: compare with it
				}
				return ServiceApplied{}, nil, specFailure(ctx, m, "create service "+t.name, err)
			}
			applied.ServiceID = resp.ID
			return applied, nil, nil
		case err != nil:
			return ServiceApplied{}, nil, apiFailure(ctx, m, "read service "+t.name, err)
		}
		spec, err := t.want(&svc)
		if err != nil {
			return ServiceApplied{}, nil, err
		}
		diff := t.diff(svc.Spec, spec)
		if len(diff) == 0 {
			if earlier.Changed && (earlier.ServiceID == "" || earlier.ServiceID == svc.ID) {
				earlier.ServiceID = svc.ID
				return earlier.ServiceApplied, earlier.Before, nil // an earlier attempt made the change
			}
			return appliedOf(svc.Spec, ServiceApplied{ServiceID: svc.ID, Message: "unchanged"}), nil, nil
		}
		applied := appliedOf(spec, ServiceApplied{ServiceID: svc.ID, Changed: true, Message: "updated: " + strings.Join(diff, ", "),
			Since: svc.Meta.UpdatedAt})
		before := svc.Spec
		earlier.ServiceApplied, earlier.Before = applied, &before
		recordHeartbeat(ctx, earlier)
		actx, cancel = context.WithTimeout(ctx, apiTimeout)
		_, err = cli.ServiceUpdate(actx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{EncodedRegistryAuth: t.auth})
		cancel()
		if err != nil {
			if strings.Contains(err.Error(), "update out of sequence") && attempt < 5 {
				continue // changed meanwhile: read it again
			}
			return ServiceApplied{}, nil, specFailure(ctx, m, "update service "+t.name, err)
		}
		return applied, &before, nil
	}
}

// appliedOf fills in what a ServiceApplied says about the spec: the monitor
// window, the replicas, the mode.
func appliedOf(spec swarm.ServiceSpec, a ServiceApplied) ServiceApplied {
	a.Monitor, a.Replicas = monitorOf(spec), replicasOf(spec)
	switch {
	case spec.Mode.Global != nil:
		a.Mode = playbooks.ModeGlobal
	case spec.Mode.GlobalJob != nil:
		a.Mode, a.RunsOnce = playbooks.ModeGlobalJob, true
	case spec.Mode.ReplicatedJob != nil:
		a.Mode, a.RunsOnce = playbooks.ModeReplicatedJob, true
	}
	if r := spec.TaskTemplate.RestartPolicy; r != nil && r.Condition == swarm.RestartPolicyConditionNone {
		a.RunsOnce = true
	}
	return a
}

// specFailure is apiFailure, except that a spec the engine refuses is final.
func specFailure(ctx context.Context, m remote.Host, what string, err error) error {
	if cerrdefs.IsInvalidArgument(err) || cerrdefs.IsNotFound(err) {
		return serviceSpecRefused(m, "could not %s: %s", what, engineMessage(err))
	}
	return apiFailure(ctx, m, what, err)
}

// resolveRefs gives a spec's network attachments, secrets and configs the engine
// IDs of the objects they name. objects are the stack's own secrets and configs
// (by the names the spec writes); others are looked up by name.
func (s *Swarm) resolveRefs(ctx context.Context, m remote.Host, cli *client.Client, spec *swarm.ServiceSpec, objects []StackObject) error {
	var names []string
	for _, n := range spec.TaskTemplate.Networks {
		names = append(names, n.Target)
	}
	ids, err := s.networkIDs(ctx, m, cli, names)
	if err != nil {
		return err
	}
	nets := slices.Clone(spec.TaskTemplate.Networks)
	for i := range nets {
		nets[i].Target = ids[nets[i].Target]
	}
	spec.TaskTemplate.Networks = nets
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return nil
	}
	secrets, configs := map[string]compose.ObjectID{}, map[string]compose.ObjectID{}
	for _, o := range objects {
		id := compose.ObjectID{ID: o.ID, Name: o.EngineName}
		if o.Kind == ObjectSecret {
			secrets[o.Name] = id
		} else {
			configs[o.Name] = id
		}
	}
	for _, r := range cs.Secrets {
		if _, ok := secrets[r.SecretName]; !ok {
			actx, cancel := context.WithTimeout(ctx, apiTimeout)
			sec, _, err := cli.SecretInspectWithRaw(actx, r.SecretName)
			cancel()
			if err != nil {
				return objectLookupFailure(ctx, m, "secret", r.SecretName, err)
			}
			secrets[r.SecretName] = compose.ObjectID{ID: sec.ID, Name: sec.Spec.Name}
		}
	}
	for _, r := range cs.Configs {
		if _, ok := configs[r.ConfigName]; !ok {
			actx, cancel := context.WithTimeout(ctx, apiTimeout)
			cfg, _, err := cli.ConfigInspectWithRaw(actx, r.ConfigName)
			cancel()
			if err != nil {
				return objectLookupFailure(ctx, m, "config", r.ConfigName, err)
			}
			configs[r.ConfigName] = compose.ObjectID{ID: cfg.ID, Name: cfg.Spec.Name}
		}
	}
	if err := compose.ResolveObjects(spec, secrets, configs); err != nil {
		return serviceSpecRefused(m, "%v", err)
	}
	return nil
}

// objectLookupFailure is the error of looking up a secret or config by name.
func objectLookupFailure(ctx context.Context, m remote.Host, kind, name string, err error) error {
	if cerrdefs.IsNotFound(err) {
		return serviceSpecRefused(m, "%s %s does not exist on the swarm: create it first (a stack's %ss, or docker %s create)", kind, name, kind, kind)
	}
	return apiFailure(ctx, m, "look up "+kind+" "+name, err)
}

// imageFor is the image reference a spec gets: with registry credentials, the
// tag pinned to its digest; without, as written ("" stays "").
func (s *Swarm) imageFor(ctx context.Context, m remote.Host, cli *client.Client, image, auth string) (string, error) {
	if image == "" || auth == "" {
		return image, nil
	}
	return pinDigest(ctx, m, cli, image, auth)
}

// networkIDs resolves network names to the IDs the engine keeps in service specs.
func (s *Swarm) networkIDs(ctx context.Context, m remote.Host, cli *client.Client, names []string) (map[string]string, error) {
	ids := map[string]string{}
	for _, name := range names {
		if _, done := ids[name]; done {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		n, err := cli.NetworkInspect(actx, name, network.InspectOptions{Scope: "swarm"})
		cancel()
		switch {
		case cerrdefs.IsNotFound(err):
			return nil, serviceSpecRefused(m, "network %s does not exist on the swarm: create it first (swarmInit networks, or a stack's networks)", name)
		case err != nil:
			return nil, apiFailure(ctx, m, "look up network "+name, err)
		}
		ids[name] = n.ID
	}
	return ids, nil
}

// serviceSpec is cur with the step's fields applied, their values taken from full
// (the step's whole spec, from compose.ServiceSpec, references resolved). Pointers
// of cur that change are copied first: cur is compared with the result afterwards.
func serviceSpec(cur swarm.ServiceSpec, want playbooks.ServiceStep, full swarm.ServiceSpec) (swarm.ServiceSpec, error) {
	spec := cur
	cs := swarm.ContainerSpec{}
	if cur.TaskTemplate.ContainerSpec != nil {
		cs = *cur.TaskTemplate.ContainerSpec
	}
	fc := full.TaskTemplate.ContainerSpec
	if want.Image != "" {
		cs.Image = fc.Image
	}
	if want.Env != nil {
		cs.Env = nonNil(fc.Env)
	}
	if want.Entrypoint != nil {
		cs.Command = nonNil(fc.Command)
	}
	if want.Command != nil {
		cs.Args = nonNil(fc.Args)
	}
	if want.Workdir != "" {
		cs.Dir = fc.Dir
	}
	if want.User != "" {
		cs.User = fc.User
	}
	if want.ContainerLabels != nil {
		cs.Labels = fc.Labels
	}
	if want.Mounts != nil {
		cs.Mounts = []mount.Mount{}
		for _, mt := range fc.Mounts {
			mt.VolumeOptions = nil // the step's volumes exist, or are the node's default driver's
			cs.Mounts = append(cs.Mounts, mt)
		}
	}
	if want.HealthCheck != nil {
		cs.Healthcheck = fc.Healthcheck
	}
	if want.StopGracePeriod != 0 {
		cs.StopGracePeriod = fc.StopGracePeriod
	}
	if want.Secrets != nil {
		cs.Secrets = nonNil(fc.Secrets)
	}
	if want.Configs != nil {
		cs.Configs = nonNil(fc.Configs)
	}
	spec.TaskTemplate.ContainerSpec = &cs
	if want.Labels != nil {
		spec.Labels = full.Labels
	}
	if want.Constraints != nil || want.Preferences != nil || want.MaxReplicasPerNode != nil {
		p := swarm.Placement{}
		if cur.TaskTemplate.Placement != nil {
			p = *cur.TaskTemplate.Placement
		}
		fp := full.TaskTemplate.Placement
		if want.Constraints != nil {
			p.Constraints = slices.Clone(want.Constraints)
		}
		if want.Preferences != nil {
			p.Preferences = nonNil(fp.Preferences)
		}
		if want.MaxReplicasPerNode != nil {
			p.MaxReplicas = fp.MaxReplicas
		}
		spec.TaskTemplate.Placement = &p
	}
	if want.Resources != nil {
		spec.TaskTemplate.Resources = full.TaskTemplate.Resources
	}
	if want.RestartPolicy != nil {
		spec.TaskTemplate.RestartPolicy = full.TaskTemplate.RestartPolicy
	}
	if want.Networks != nil {
		spec.TaskTemplate.Networks = nonNil(full.TaskTemplate.Networks)
	}
	if want.Ports != nil {
		e := swarm.EndpointSpec{}
		if cur.EndpointSpec != nil {
			e = *cur.EndpointSpec
		}
		e.Ports = nonNil(full.EndpointSpec.Ports)
		spec.EndpointSpec = &e
	}
	switch {
	case want.Mode != "":
		spec.Mode = full.Mode
		if r := spec.Mode.Replicated; r != nil && r.Replicas == nil {
			if cr := cur.Mode.Replicated; cr != nil && cr.Replicas != nil {
				spec.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: cr.Replicas}}
			}
		}
	case want.Replicas != nil && cur.Mode.Global != nil:
		return spec, invalidInput(fmt.Sprintf("service %s is global: replicas needs mode: replicated", want.Service))
	case want.Replicas != nil || (cur.Mode.Replicated == nil && cur.Mode.Global == nil && cur.Mode.ReplicatedJob == nil && cur.Mode.GlobalJob == nil):
		n := uint64(1)
		if want.Replicas != nil {
			n = *want.Replicas
		}
		spec.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &n}}
	}
	if want.Update != nil {
		spec.UpdateConfig = full.UpdateConfig
	}
	if want.Rollback != nil {
		spec.RollbackConfig = full.RollbackConfig
	}
	return spec, nil
}

// nonNil is s, or an empty slice for nil: a field the step sets to nothing.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// specDiff names the managed fields in which two specs differ.
func specDiff(cur, want swarm.ServiceSpec) []string {
	a, b := managed(cur), managed(want)
	var diff []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			diff = append(diff, va.Type().Field(i).Tag.Get("diff"))
		}
	}
	return diff
}

// managedFields is the part of a spec the playbook sets, normalised (nil and empty
// are the same).
type managedFields struct {
	Image           string                          `diff:"image"`
	Mode            string                          `diff:"mode"`
	Replicas        uint64                          `diff:"replicas"`
	Env             []string                        `diff:"env"`
	Entrypoint      []string                        `diff:"entrypoint"`
	Command         []string                        `diff:"command"`
	Workdir         string                          `diff:"workdir"`
	User            string                          `diff:"user"`
	Labels          map[string]string               `diff:"labels"`
	ContainerLabels map[string]string               `diff:"containerLabels"`
	Mounts          []playbooks.ServiceMount        `diff:"mounts"`
	Health          *container.HealthConfig         `diff:"healthCheck"`
	StopGrace       time.Duration                   `diff:"stopGracePeriod"`
	Secrets         []string                        `diff:"secrets"`
	Configs         []string                        `diff:"configs"`
	Constraints     []string                        `diff:"constraints"`
	Preferences     []string                        `diff:"placementPreferences"`
	MaxPerNode      uint64                          `diff:"maxReplicasPerNode"`
	Resources       swarm.ResourceRequirements      `diff:"resources"`
	Restart         swarm.RestartPolicy             `diff:"restartPolicy"`
	Networks        []swarm.NetworkAttachmentConfig `diff:"networks"`
	Ports           []playbooks.ServicePort         `diff:"ports"`
	Update          *swarm.UpdateConfig             `diff:"updateConfig"`
	Rollback        *swarm.UpdateConfig             `diff:"rollbackConfig"`
}

func managed(s swarm.ServiceSpec) managedFields {
	f := managedFields{Mode: appliedOf(s, ServiceApplied{}).Mode, Replicas: replicasOf(s), Update: s.UpdateConfig, Rollback: s.RollbackConfig,
		Env: []string{}, Entrypoint: []string{}, Command: []string{}, Labels: nonEmpty(s.Labels), ContainerLabels: map[string]string{},
		Mounts: []playbooks.ServiceMount{}, Secrets: []string{}, Configs: []string{}, Constraints: []string{}, Preferences: []string{},
		Networks: []swarm.NetworkAttachmentConfig{}, Ports: []playbooks.ServicePort{}}
	if cs := s.TaskTemplate.ContainerSpec; cs != nil {
		f.Image, f.Health, f.Workdir, f.User = cs.Image, cs.Healthcheck, cs.Dir, cs.User
		f.Env = append(f.Env, cs.Env...)
		slices.Sort(f.Env)
		f.Entrypoint = append(f.Entrypoint, cs.Command...)
		f.Command = append(f.Command, cs.Args...)
		f.ContainerLabels = nonEmpty(cs.Labels)
		if cs.StopGracePeriod != nil {
			f.StopGrace = *cs.StopGracePeriod
		}
		for _, m := range cs.Mounts {
			f.Mounts = append(f.Mounts, playbooks.ServiceMount{Type: string(m.Type), Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
		}
		for _, r := range cs.Secrets {
			f.Secrets = append(f.Secrets, fmt.Sprintf("%s %+v", r.SecretID, r.File))
		}
		for _, r := range cs.Configs {
			f.Configs = append(f.Configs, fmt.Sprintf("%s %+v", r.ConfigID, r.File))
		}
	}
	if p := s.TaskTemplate.Placement; p != nil {
		f.Constraints = append(f.Constraints, p.Constraints...)
		for _, pr := range p.Preferences {
			if pr.Spread != nil {
				f.Preferences = append(f.Preferences, pr.Spread.SpreadDescriptor)
			}
		}
		f.MaxPerNode = p.MaxReplicas
	}
	if r := s.TaskTemplate.Resources; r != nil {
		f.Resources = *r
		if l := r.Limits; l != nil && *l == (swarm.Limit{}) {
			f.Resources.Limits = nil
		}
		if rs := r.Reservations; rs != nil && rs.NanoCPUs == 0 && rs.MemoryBytes == 0 && len(rs.GenericResources) == 0 {
			f.Resources.Reservations = nil
		}
	}
	if r := s.TaskTemplate.RestartPolicy; r != nil {
		// as the engine returns it: a delay and a number of attempts always
		f.Restart = *r
		d, n := restartDelay, uint64(0)
		if r.Delay != nil {
			d = *r.Delay
		}
		if r.MaxAttempts != nil {
			n = *r.MaxAttempts
		}
		f.Restart.Delay, f.Restart.MaxAttempts = &d, &n
	}
	for _, n := range s.TaskTemplate.Networks {
		n.Aliases = nonNil(n.Aliases)
		f.Networks = append(f.Networks, n)
	}
	slices.SortFunc(f.Networks, func(a, b swarm.NetworkAttachmentConfig) int { return strings.Compare(a.Target, b.Target) })
	if e := s.EndpointSpec; e != nil {
		for _, p := range e.Ports {
			mode := string(p.PublishMode)
			if mode == "" {
				mode = playbooks.PortIngress
			}
			f.Ports = append(f.Ports, playbooks.ServicePort{Published: p.PublishedPort, Target: p.TargetPort, Protocol: string(p.Protocol), Mode: mode})
		}
	}
	return f
}

// nonEmpty is m, or an empty map for nil.
func nonEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func replicasOf(s swarm.ServiceSpec) uint64 {
	if r := s.Mode.Replicated; r != nil && r.Replicas != nil {
		return *r.Replicas
	}
	if j := s.Mode.ReplicatedJob; j != nil {
		if j.TotalCompletions != nil {
			return *j.TotalCompletions
		}
		return 1
	}
	return 0
}

func monitorOf(s swarm.ServiceSpec) playbooks.Duration {
	if u := s.UpdateConfig; u != nil && u.Monitor > 0 {
		return playbooks.Duration(u.Monitor)
	}
	return playbooks.Duration(5 * time.Second)
}
