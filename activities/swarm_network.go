package activities

import (
	"context"
	"fmt"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// EnsureNetworkRequest asks for an overlay network.
type EnsureNetworkRequest struct {
	Manager remote.Host              `json:"manager"`
	Network playbooks.OverlayNetwork `json:"network"`
}

// EnsureNetwork creates the overlay network unless one of that name exists. An
// existing network with other options is refused: networks cannot change in place.
func (s *Swarm) EnsureNetwork(ctx context.Context, req EnsureNetworkRequest) (SwarmChange, error) {
	m, want := req.Manager, req.Network
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return SwarmChange{}, err
	}
	defer cli.Close()
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	got, err := cli.NetworkInspect(actx, want.Name, network.InspectOptions{Scope: "swarm"})
	switch {
	case err == nil:
		_, enc := got.Options["encrypted"]
		var diff []string
		if got.Driver != "overlay" {
			diff = append(diff, "driver "+got.Driver)
		}
		if got.Attachable != want.Attachable {
			diff = append(diff, fmt.Sprintf("attachable %t", got.Attachable))
		}
		if enc != want.Encrypted {
			diff = append(diff, fmt.Sprintf("encrypted %t", enc))
		}
		if want.Subnet != "" && !slices.ContainsFunc(got.IPAM.Config, func(c network.IPAMConfig) bool { return c.Subnet == want.Subnet }) {
			diff = append(diff, "another subnet")
		}
		if len(diff) > 0 {
			return SwarmChange{}, swarmConflict(m, "network %s exists with %s; a network cannot be changed in place: remove it (docker network rm %s) or choose another name",
				want.Name, strings.Join(diff, ", "), want.Name)
		}
		return SwarmChange{Message: "network " + want.Name + " exists"}, nil
	case !cerrdefs.IsNotFound(err):
		return SwarmChange{}, apiFailure(ctx, m, "look up network "+want.Name, err)
	}
	opts := network.CreateOptions{Driver: "overlay", Scope: "swarm", Attachable: want.Attachable, Labels: want.Labels}
	if want.Encrypted {
		opts.Options = map[string]string{"encrypted": ""}
	}
	if want.Subnet != "" {
		opts.IPAM = &network.IPAM{Config: []network.IPAMConfig{{Subnet: want.Subnet}}}
	}
	if _, err := cli.NetworkCreate(actx, want.Name, opts); err != nil {
		if cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "already exists") {
			return SwarmChange{Message: "network " + want.Name + " exists"}, nil
		}
		return SwarmChange{}, apiFailure(ctx, m, "create network "+want.Name, err)
	}
	return SwarmChange{Changed: true, Message: "network " + want.Name + " created"}, nil
}
