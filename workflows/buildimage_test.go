package workflows

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

func buildInput() BuildImageInput {
	return BuildImageInput{Hosts: []remote.Host{{Name: "master"}, {Name: "slave01"}, {Name: "slave02"}},
		Build: playbooks.BuildImageStep{Dir: "/pb", Context: "images/web", Tag: "clusterflow/web:1", Builder: "slave01"}}
}

// runBuild runs BuildImage with the build answered by build and every load by
// loaded (slave02 has the image already).
func runBuild(t *testing.T, in BuildImageInput, buildErr error) (BuildImageResult, []string) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var mu sync.Mutex
	var loads []string
	env.OnActivity(swarmActs.BuildImage, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.BuildImageRequest) (activities.ImageBuilt, error) {
			if buildErr != nil {
				return activities.ImageBuilt{}, buildErr
			}
			return activities.ImageBuilt{Host: r.Host.Name, Tag: r.Build.Tag, ImageID: "sha256:1", Built: true, Message: "built " + r.Build.Tag}, nil
		})
	env.OnActivity(swarmActs.DistributeImage, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.DistributeImageRequest) (activities.ImageLoaded, error) {
			mu.Lock()
			defer mu.Unlock()
			loads = append(loads, r.From.Name+">"+r.To.Name+" "+r.ImageID)
			has := r.To.Name == "slave02"
			return activities.ImageLoaded{Host: r.To.Name, ImageID: r.ImageID, Changed: !has, Message: map[bool]string{true: "has it", false: "loaded"}[has]}, nil
		})
	env.ExecuteWorkflow(BuildImage, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res BuildImageResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	slices.Sort(loads)
	return res, loads
}

func TestBuildImageBuildsOnceAndLoadsTheOthers(t *testing.T) {
	res, loads := runBuild(t, buildInput(), nil)
	if res.Builder != "slave01" || !res.Image.Built {
		t.Fatalf("result %+v", res)
	}
	if !slices.Equal(loads, []string{"slave01>master sha256:1", "slave01>slave02 sha256:1"}) {
		t.Errorf("loads %v", loads)
	}
	want := map[string]string{"master": HostChanged, "slave01": HostChanged, "slave02": HostUnchanged}
	for _, h := range res.Hosts {
		if h.State != want[h.Host] {
			t.Errorf("%s: %s (%s), want %s", h.Host, h.State, h.Message, want[h.Host])
		}
	}
}

func TestBuildImageFailedBuildLoadsNothing(t *testing.T) {
	res, loads := runBuild(t, buildInput(), temporal.NewNonRetryableApplicationError("host slave01: building failed: unknown instruction", activities.ErrImageBuild, nil))
	if len(loads) != 0 {
		t.Errorf("loads %v", loads)
	}
	for _, h := range res.Hosts {
		if h.State != HostFailed || (h.Host == "slave01") != strings.Contains(h.Message, "unknown instruction") {
			t.Errorf("%s: %s (%s)", h.Host, h.State, h.Message)
		}
	}
}

func TestBuildImageInvalidInput(t *testing.T) {
	for name, mut := range map[string]func(*BuildImageInput){
		"builder not a step host": func(in *BuildImageInput) { in.Build.Builder = "elsewhere" },
		"tag with digest":         func(in *BuildImageInput) { in.Build.Tag = "web@sha256:abc" },
		"context outside":         func(in *BuildImageInput) { in.Build.Context = "../images" },
		"no dir":                  func(in *BuildImageInput) { in.Build.Dir = "" },
	} {
		t.Run(name, func(t *testing.T) {
			in := buildInput()
			mut(&in)
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			env.ExecuteWorkflow(BuildImage, in)
			if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), ErrInvalidInput) {
				t.Fatalf("want InvalidInput, got %v", err)
			}
		})
	}
}
