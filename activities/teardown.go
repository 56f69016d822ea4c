package activities

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/compose"
	"github.com/clusterflow/clusterflow/playbooks"
)

// This file holds the activities of the Teardown procedure: RemoveSwarmObjects
// (removeService, removeStack, removeNetwork, through a manager) and
// RemoveVolume (on one host). Removing what is not there is unchanged, so a retry
// after a worker died finishes what the first attempt started.

// RemoveObjectsRequest asks for a swarm object to be removed through a manager.
// MaxWait bounds the wait for tasks to go and networks to be free.
type RemoveObjectsRequest struct {
	Manager remote.Host          `json:"manager"`
	Remove  playbooks.RemoveStep `json:"remove"`
	MaxWait playbooks.Duration   `json:"maxWait,omitempty"`
}

// ObjectsRemoved is what a teardown removed.
type ObjectsRemoved struct {
	Changed  bool     `json:"changed"`
	Message  string   `json:"message"`
	Services []string `json:"services,omitempty"`
	Networks []string `json:"networks,omitempty"`
	Secrets  []string `json:"secrets,omitempty"`
	Configs  []string `json:"configs,omitempty"`
}

// RemoveSwarmObjects removes a service (and waits until its tasks are gone), a
// stack (its services, then, once their tasks are gone, its networks, secrets and
// configs: everything labelled com.docker.stack.namespace=STACK, as `docker
// stack rm` removes) or an overlay network (once no container uses it).
func (s *Swarm) RemoveSwarmObjects(ctx context.Context, req RemoveObjectsRequest) (ObjectsRemoved, error) {
	m, r := req.Manager, req.Remove
	if ps := r.Normalize(playbooks.Scope{}); len(ps) > 0 {
		return ObjectsRemoved{}, invalidInput(r.Op + ": " + ps.Error())
	}
	wait := req.MaxWait.Std()
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	deadline := time.Now().Add(wait)
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return ObjectsRemoved{}, err
	}
	defer cli.Close()
	var out ObjectsRemoved
	switch r.Op {
	case playbooks.KindRemoveService:
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		svc, _, err := cli.ServiceInspectWithRaw(actx, r.Name, swarm.ServiceInspectOptions{})
		cancel()
		switch {
		case cerrdefs.IsNotFound(err):
			// gone: its tasks may still be on their way out (a retry)
		case err != nil:
			return out, apiFailure(ctx, m, "read service "+r.Name, err)
		default:
			if _, err := s.removeService(ctx, m, cli, svc.ID); err != nil {
				return out, err
			}
			out.Services = []string{r.Name}
			if err := s.waitTasksGone(ctx, m, cli, []string{svc.ID}, deadline); err != nil {
				return out, err
			}
		}
	case playbooks.KindRemoveNetwork:
		removed, err := s.removeNetwork(ctx, m, cli, r.Name, deadline)
		if err != nil {
			return out, err
		}
		if removed {
			out.Networks = []string{r.Name}
		}
	case playbooks.KindRemoveStack:
		if err := s.removeStack(ctx, m, cli, r.Name, deadline, &out); err != nil {
			return out, err
		}
	default:
		return out, invalidInput("RemoveSwarmObjects: " + r.Op + " is not removed through a manager")
	}
	out.Changed = len(out.Services)+len(out.Networks)+len(out.Secrets)+len(out.Configs) > 0
	out.Message = removedText(r, out)
	return out, nil
}

// removedText sums up a teardown: "removed services a, b; networks n".
func removedText(r playbooks.RemoveStep, out ObjectsRemoved) string {
	var parts []string
	for _, l := range []struct {
		what  string
		names []string
	}{{"services", out.Services}, {"networks", out.Networks}, {"secrets", out.Secrets}, {"configs", out.Configs}} {
		if len(l.names) > 0 {
			parts = append(parts, l.what+" "+strings.Join(l.names, ", "))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%s %s is not there", strings.TrimPrefix(strings.ToLower(r.Op), "remove"), r.Name)
	}
	return "removed " + strings.Join(parts, "; ")
}

// removeStack removes everything labelled with the stack's namespace: services
// first, then (their tasks gone) networks, secrets and configs.
func (s *Swarm) removeStack(ctx context.Context, m remote.Host, cli *client.Client, stack string, deadline time.Time, out *ObjectsRemoved) error {
	f := filters.NewArgs(filters.Arg("label", compose.LabelNamespace+"="+stack))
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	services, err := cli.ServiceList(actx, swarm.ServiceListOptions{Filters: f})
	cancel()
	if err != nil {
		return apiFailure(ctx, m, "list the services of stack "+stack, err)
	}
	slices.SortFunc(services, func(a, b swarm.Service) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
	var ids []string
	for _, svc := range services {
		if _, err := s.removeService(ctx, m, cli, svc.ID); err != nil {
			return err
		}
		out.Services = append(out.Services, svc.Spec.Name)
		ids = append(ids, svc.ID)
	}
	// A retry finds the services gone: their tasks may not be.
	if err := s.waitStackTasksGone(ctx, m, cli, stack, ids, deadline); err != nil {
		return err
	}
	actx, cancel = context.WithTimeout(ctx, apiTimeout)
	nets, err := cli.NetworkList(actx, network.ListOptions{Filters: f})
	cancel()
	if err != nil {
		return apiFailure(ctx, m, "list the networks of stack "+stack, err)
	}
	slices.SortFunc(nets, func(a, b network.Summary) int { return strings.Compare(a.Name, b.Name) })
	for _, n := range nets {
		removed, err := s.removeNetwork(ctx, m, cli, n.ID, deadline)
		if err != nil {
			return err
		}
		if removed {
			out.Networks = append(out.Networks, n.Name)
		}
	}
	actx, cancel = context.WithTimeout(ctx, apiTimeout)
	secrets, err := cli.SecretList(actx, swarm.SecretListOptions{Filters: f})
	cancel()
	if err != nil {
		return apiFailure(ctx, m, "list the secrets of stack "+stack, err)
	}
	for _, sec := range secrets {
		if removed, err := removeObject(ctx, m, cli, ObjectSecret, sec.ID, false); err != nil {
			return err
		} else if removed {
			out.Secrets = append(out.Secrets, sec.Spec.Name)
		}
	}
	actx, cancel = context.WithTimeout(ctx, apiTimeout)
	configs, err := cli.ConfigList(actx, swarm.ConfigListOptions{Filters: f})
	cancel()
	if err != nil {
		return apiFailure(ctx, m, "list the configs of stack "+stack, err)
	}
	for _, cfg := range configs {
		if removed, err := removeObject(ctx, m, cli, ObjectConfig, cfg.ID, false); err != nil {
			return err
		} else if removed {
			out.Configs = append(out.Configs, cfg.Spec.Name)
		}
	}
	slices.Sort(out.Secrets)
	slices.Sort(out.Configs)
	return nil
}

// waitStackTasksGone waits until no task of the removed services, nor any task
// of a service labelled with the stack (a retry finds the services gone), is left.
func (s *Swarm) waitStackTasksGone(ctx context.Context, m remote.Host, cli *client.Client, stack string, ids []string, deadline time.Time) error {
	return s.waitTasksGone(ctx, m, cli, ids, deadline, compose.LabelNamespace+"="+stack)
}

// waitTasksGone waits until the services' tasks (and those whose service had the
// label, KEY=VALUE) have ended (taskEnded), heartbeating. The engine lists no
// tasks by the ID of a service that is gone, so all tasks are listed and picked.
func (s *Swarm) waitTasksGone(ctx context.Context, m remote.Host, cli *client.Client, ids []string, deadline time.Time, label ...string) error {
	for {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		tasks, err := cli.TaskList(actx, swarm.TaskListOptions{})
		cancel()
		if err != nil {
			return apiFailure(ctx, m, "list tasks", err)
		}
		left := 0
		for _, t := range tasks {
			if (slices.Contains(ids, t.ServiceID) || (len(label) > 0 && hasLabel(t.Spec.ContainerSpec, label[0]))) && !taskEnded(t) {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return convergeTimeout(fmt.Sprintf("%d tasks of the removed services are still on the swarm; the step's timeout passed", left))
		}
		recordHeartbeat(ctx, fmt.Sprintf("%d tasks left", left))
		if err := sleepCtx(ctx, s.poll); err != nil {
			return err
		}
	}
}

// taskEnded reports whether a task's container is gone or never started: its
// state is past running. The engine keeps ended tasks of a removed job (state
// complete) in its store for a long while: those count as gone.
func taskEnded(t swarm.Task) bool {
	switch t.Status.State {
	case swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed, swarm.TaskStateRejected,
		swarm.TaskStateRemove, swarm.TaskStateOrphaned:
		return true
	}
	return false
}

// hasLabel reports whether a task's container carries the label KEY=VALUE (a
// stack's tasks carry its namespace label, as docker/cli writes it).
func hasLabel(cs *swarm.ContainerSpec, kv string) bool {
	k, v, _ := strings.Cut(kv, "=")
	return cs != nil && cs.Labels[k] == v && v != ""
}

// removeNetwork removes a swarm network by name or ID, waiting while containers
// still use it (their tasks shutting down); false when there was none.
func (s *Swarm) removeNetwork(ctx context.Context, m remote.Host, cli *client.Client, name string, deadline time.Time) (bool, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	n, err := cli.NetworkInspect(actx, name, network.InspectOptions{Scope: "swarm"})
	cancel()
	switch {
	case cerrdefs.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, apiFailure(ctx, m, "look up network "+name, err)
	case n.Ingress:
		return false, invalidInput(fmt.Sprintf("network %s is the swarm's routing mesh (ingress): it is not removed", name))
	}
	for {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		err := cli.NetworkRemove(actx, n.ID)
		cancel()
		switch {
		case err == nil:
			return true, nil
		case cerrdefs.IsNotFound(err):
			return false, nil
		case !strings.Contains(err.Error(), "active endpoints") && !strings.Contains(err.Error(), "in use"):
			return false, apiFailure(ctx, m, "remove network "+n.Name, err)
		case time.Now().After(deadline):
			return false, swarmConflict(m, "network %s is still in use after the step's timeout: %s", n.Name, engineMessage(err))
		}
		recordHeartbeat(ctx, "network "+n.Name+" in use")
		if err := sleepCtx(ctx, s.poll); err != nil {
			return false, err
		}
	}
}

// RemoveVolumeRequest asks for a volume to be removed from one host.
type RemoveVolumeRequest struct {
	Host remote.Host `json:"host"`
	Name string      `json:"name"`
}

// RemoveVolume removes the named volume from the host's engine; absent is
// unchanged. A volume a container uses is refused (retried a few times: the
// container may be on its way out).
func (s *Swarm) RemoveVolume(ctx context.Context, req RemoveVolumeRequest) (SwarmChange, error) {
	h := req.Host
	cli, err := s.rem.dockerAPI(h)
	if err != nil {
		return SwarmChange{}, err
	}
	defer cli.Close()
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	if _, err := cli.VolumeInspect(actx, req.Name); cerrdefs.IsNotFound(err) {
		return SwarmChange{Message: "volume " + req.Name + " is not there"}, nil
	} else if err != nil {
		return SwarmChange{}, apiFailure(ctx, h, "look up volume "+req.Name, err)
	}
	if err := cli.VolumeRemove(actx, req.Name, false); err != nil {
		switch {
		case cerrdefs.IsNotFound(err):
			return SwarmChange{Message: "volume " + req.Name + " is not there"}, nil
		case cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "in use"):
			return SwarmChange{}, swarmAPI(h, "volume %s is in use: %s", req.Name, engineMessage(err))
		}
		return SwarmChange{}, apiFailure(ctx, h, "remove volume "+req.Name, err)
	}
	return SwarmChange{Changed: true, Message: "volume " + req.Name + " removed"}, nil
}
