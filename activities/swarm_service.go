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
	var earlier ServiceApplied
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &earlier)
	}
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return ServiceApplied{}, err
	}
	defer cli.Close()
	netIDs, err := s.networkIDs(ctx, m, cli, want.Networks)
	if err != nil {
		return ServiceApplied{}, err
	}
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		svc, _, err := cli.ServiceInspectWithRaw(actx, want.Service, swarm.ServiceInspectOptions{})
		cancel()
		switch {
		case cerrdefs.IsNotFound(err):
			if !want.Create {
				return ServiceApplied{}, serviceNotFound(fmt.Sprintf(
					"service %s does not exist on the swarm of %s: updateService changes a service that exists; deployService creates it", want.Service, m.Name))
			}
			spec := serviceSpec(swarm.ServiceSpec{Annotations: swarm.Annotations{Name: want.Service}}, want, netIDs)
			applied := ServiceApplied{Created: true, Changed: true, Message: "created", Monitor: monitorOf(spec), Replicas: replicasOf(spec)}
			recordHeartbeat(ctx, applied)
			actx, cancel := context.WithTimeout(ctx, apiTimeout)
			resp, err := cli.ServiceCreate(actx, spec, swarm.ServiceCreateOptions{})
			cancel()
			if err != nil {
				if (cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "already exists")) && attempt < 5 {
					continue // created meanwhile: compare with it
				}
				return ServiceApplied{}, specFailure(ctx, m, "create service "+want.Service, err)
			}
			applied.ServiceID = resp.ID
			return applied, nil
		case err != nil:
			return ServiceApplied{}, apiFailure(ctx, m, "read service "+want.Service, err)
		}
		spec := serviceSpec(svc.Spec, want, netIDs)
		if diff := specDiff(svc.Spec, spec); len(diff) == 0 {
			if earlier.Changed && (earlier.ServiceID == "" || earlier.ServiceID == svc.ID) {
				earlier.ServiceID = svc.ID
				return earlier, nil // an earlier attempt made the change
			}
			return ServiceApplied{ServiceID: svc.ID, Message: "unchanged", Monitor: monitorOf(svc.Spec), Replicas: replicasOf(svc.Spec)}, nil
		} else {
			applied := ServiceApplied{ServiceID: svc.ID, Changed: true, Message: "updated: " + strings.Join(diff, ", "),
				Since: svc.Meta.UpdatedAt, Monitor: monitorOf(spec), Replicas: replicasOf(spec)}
			recordHeartbeat(ctx, applied)
			actx, cancel := context.WithTimeout(ctx, apiTimeout)
			_, err = cli.ServiceUpdate(actx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{})
			cancel()
			if err != nil {
				if strings.Contains(err.Error(), "update out of sequence") && attempt < 5 {
					continue // changed meanwhile: read it again
				}
				return ServiceApplied{}, specFailure(ctx, m, "update service "+want.Service, err)
			}
			return applied, nil
		}
	}
}

// specFailure is apiFailure, except that a spec the engine refuses is final.
func specFailure(ctx context.Context, m remote.Host, what string, err error) error {
	if cerrdefs.IsInvalidArgument(err) || cerrdefs.IsNotFound(err) {
		return serviceSpecRefused(m, "could not %s: %s", what, engineMessage(err))
	}
	return apiFailure(ctx, m, what, err)
}

// networkIDs resolves network names to the IDs the engine keeps in service specs.
func (s *Swarm) networkIDs(ctx context.Context, m remote.Host, cli *client.Client, names []string) (map[string]string, error) {
	ids := map[string]string{}
	for _, name := range names {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		n, err := cli.NetworkInspect(actx, name, network.InspectOptions{Scope: "swarm"})
		cancel()
		switch {
		case cerrdefs.IsNotFound(err):
			return nil, serviceSpecRefused(m, "network %s does not exist on the swarm: create it first (swarmInit networks)", name)
		case err != nil:
			return nil, apiFailure(ctx, m, "look up network "+name, err)
		}
		ids[name] = n.ID
	}
	return ids, nil
}

// serviceSpec is cur with the step's fields applied. Pointers of cur that change
// are copied first: cur is compared with the result afterwards.
func serviceSpec(cur swarm.ServiceSpec, want playbooks.ServiceStep, netIDs map[string]string) swarm.ServiceSpec {
	spec := cur
	cs := swarm.ContainerSpec{}
	if cur.TaskTemplate.ContainerSpec != nil {
		cs = *cur.TaskTemplate.ContainerSpec
	}
	if want.Image != "" {
		cs.Image = want.Image
	}
	if want.Env != nil {
		cs.Env = []string{}
		for _, k := range sortedKeys(want.Env) {
			cs.Env = append(cs.Env, k+"="+want.Env[k])
		}
	}
	if want.Mounts != nil {
		cs.Mounts = []mount.Mount{}
		for _, mt := range want.Mounts {
			cs.Mounts = append(cs.Mounts, mount.Mount{Type: mount.Type(mt.Type), Source: mt.Source, Target: mt.Target, ReadOnly: mt.ReadOnly})
		}
	}
	if h := want.HealthCheck; h != nil {
		cs.Healthcheck = &container.HealthConfig{Test: h.Test, Interval: h.Interval.Std(), Timeout: h.Timeout.Std(),
			Retries: h.Retries, StartPeriod: h.StartPeriod.Std()}
	}
	spec.TaskTemplate.ContainerSpec = &cs
	if want.Constraints != nil {
		p := swarm.Placement{}
		if cur.TaskTemplate.Placement != nil {
			p = *cur.TaskTemplate.Placement
		}
		p.Constraints = slices.Clone(want.Constraints)
		spec.TaskTemplate.Placement = &p
	}
	if want.Networks != nil {
		spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{}
		for _, name := range want.Networks {
			spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: netIDs[name]})
		}
	}
	if want.Ports != nil {
		e := swarm.EndpointSpec{}
		if cur.EndpointSpec != nil {
			e = *cur.EndpointSpec
		}
		e.Ports = []swarm.PortConfig{}
		for _, p := range want.Ports {
			e.Ports = append(e.Ports, swarm.PortConfig{Protocol: swarm.PortConfigProtocol(p.Protocol),
				TargetPort: p.Target, PublishedPort: p.Published, PublishMode: swarm.PortConfigPublishModeHost})
		}
		spec.EndpointSpec = &e
	}
	if want.Replicas != nil || (cur.Mode.Replicated == nil && cur.Mode.Global == nil) {
		n := uint64(1)
		if want.Replicas != nil {
			n = *want.Replicas
		}
		spec.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &n}}
	}
	if want.Update != nil {
		spec.UpdateConfig = updateConfig(*want.Update)
	}
	if want.Rollback != nil {
		spec.RollbackConfig = updateConfig(*want.Rollback)
	}
	return spec
}

func updateConfig(u playbooks.UpdatePolicy) *swarm.UpdateConfig {
	return &swarm.UpdateConfig{Parallelism: u.Parallelism, Delay: u.Delay.Std(), FailureAction: u.FailureAction,
		Monitor: u.Monitor.Std(), MaxFailureRatio: u.MaxFailureRatio, Order: u.Order}
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
	Image       string                   `diff:"image"`
	Replicas    uint64                   `diff:"replicas"`
	Env         []string                 `diff:"env"`
	Mounts      []playbooks.ServiceMount `diff:"mounts"`
	Health      *container.HealthConfig  `diff:"healthCheck"`
	Constraints []string                 `diff:"constraints"`
	Networks    []string                 `diff:"networks"`
	Ports       []playbooks.ServicePort  `diff:"ports"`
	Update      *swarm.UpdateConfig      `diff:"updateConfig"`
	Rollback    *swarm.UpdateConfig      `diff:"rollbackConfig"`
}

func managed(s swarm.ServiceSpec) managedFields {
	f := managedFields{Replicas: replicasOf(s), Update: s.UpdateConfig, Rollback: s.RollbackConfig,
		Env: []string{}, Mounts: []playbooks.ServiceMount{}, Constraints: []string{}, Networks: []string{}, Ports: []playbooks.ServicePort{}}
	if cs := s.TaskTemplate.ContainerSpec; cs != nil {
		f.Image, f.Health = cs.Image, cs.Healthcheck
		f.Env = append(f.Env, cs.Env...)
		slices.Sort(f.Env)
		for _, m := range cs.Mounts {
			f.Mounts = append(f.Mounts, playbooks.ServiceMount{Type: string(m.Type), Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
		}
	}
	if p := s.TaskTemplate.Placement; p != nil {
		f.Constraints = append(f.Constraints, p.Constraints...)
	}
	for _, n := range s.TaskTemplate.Networks {
		f.Networks = append(f.Networks, n.Target)
	}
	slices.Sort(f.Networks)
	if e := s.EndpointSpec; e != nil {
		for _, p := range e.Ports {
			f.Ports = append(f.Ports, playbooks.ServicePort{Published: p.PublishedPort, Target: p.TargetPort, Protocol: string(p.Protocol)})
		}
	}
	return f
}

func replicasOf(s swarm.ServiceSpec) uint64 {
	if r := s.Mode.Replicated; r != nil && r.Replicas != nil {
		return *r.Replicas
	}
	return 0
}

func monitorOf(s swarm.ServiceSpec) playbooks.Duration {
	if u := s.UpdateConfig; u != nil && u.Monitor > 0 {
		return playbooks.Duration(u.Monitor)
	}
	return playbooks.Duration(5 * time.Second)
}
