package workflows

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

func runTeardown(t *testing.T, in TeardownInput, removed activities.ObjectsRemoved) (TeardownResult, []activities.RemoveObjectsRequest) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var reqs []activities.RemoveObjectsRequest
	env.OnActivity(swarmActs.FindManager, mock.Anything, mock.Anything).Return("master", nil)
	env.OnActivity(swarmActs.RemoveSwarmObjects, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.RemoveObjectsRequest) (activities.ObjectsRemoved, error) {
			reqs = append(reqs, r)
			return removed, nil
		})
	env.OnActivity(swarmActs.RemoveVolume, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.RemoveVolumeRequest) (activities.SwarmChange, error) {
			if r.Host.Name == "slave01" {
				return activities.SwarmChange{Changed: true, Message: "volume " + r.Name + " removed"}, nil
			}
			return activities.SwarmChange{Message: "volume " + r.Name + " is not there"}, nil
		})
	env.ExecuteWorkflow(Teardown, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res TeardownResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return res, reqs
}

func TestTeardownStack(t *testing.T) {
	in := TeardownInput{Hosts: []remote.Host{{Name: "master"}}, Remove: playbooks.RemoveStep{Op: playbooks.KindRemoveStack, Name: "demo"}}
	res, reqs := runTeardown(t, in, activities.ObjectsRemoved{Changed: true, Message: "removed services demo_web", Services: []string{"demo_web"}})
	if len(reqs) != 1 || reqs[0].Remove.Name != "demo" || reqs[0].MaxWait.Std() <= 0 || res.Manager != "master" {
		t.Fatalf("requests %+v, result %+v", reqs, res)
	}
	if h := res.Hosts[0]; h.State != HostChanged || h.Message != "removed services demo_web" {
		t.Errorf("host %+v", h)
	}
	res, _ = runTeardown(t, in, activities.ObjectsRemoved{Message: "stack demo is not there"})
	if h := res.Hosts[0]; h.State != HostUnchanged {
		t.Errorf("absent: host %+v", h)
	}
}

func TestTeardownVolumeOnEachHost(t *testing.T) {
	in := TeardownInput{Hosts: []remote.Host{{Name: "master"}, {Name: "slave01"}}, Remove: playbooks.RemoveStep{Op: playbooks.KindRemoveVolume, Name: "demo_data"}}
	res, reqs := runTeardown(t, in, activities.ObjectsRemoved{})
	if len(reqs) != 0 || res.Hosts[0].State != HostUnchanged || res.Hosts[1].State != HostChanged || !strings.Contains(res.Hosts[1].Message, "removed") {
		t.Fatalf("result %+v", res)
	}
}

func TestTeardownInvalidInput(t *testing.T) {
	for name, r := range map[string]playbooks.RemoveStep{
		"no name":         {Op: playbooks.KindRemoveService},
		"unknown op":      {Op: "removeEverything", Name: "x"},
		"volume manager":  {Op: playbooks.KindRemoveVolume, Name: "x", Manager: "master"},
		"ingress network": {Op: playbooks.KindRemoveNetwork, Name: "ingress"},
		"bad stack":       {Op: playbooks.KindRemoveStack, Name: "Demo"},
	} {
		t.Run(name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			env.ExecuteWorkflow(Teardown, TeardownInput{Hosts: []remote.Host{{Name: "master"}}, Remove: r})
			if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), ErrInvalidInput) {
				t.Fatalf("want InvalidInput, got %v", err)
			}
		})
	}
}
