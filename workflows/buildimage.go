package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// BuildImageName is the registered name of BuildImage: stable, histories use it.
const BuildImageName = "BuildImage"

// BuildImageInput is the one argument of BuildImage. From the Web UI:
//
//	{"hosts": [{"name": "master", ...}, {"name": "slave01", ...}],
//	 "build": {"dir": "/path/playbooks", "context": "images/web", "tag": "clusterflow/web:1"},
//	 "parallel": 3}
type BuildImageInput struct {
	// Hosts are the hosts that get the image; the builder is one of them.
	Hosts []remote.Host            `json:"hosts"`
	Build playbooks.BuildImageStep `json:"build"`
	// Parallel bounds the hosts loading the image at once; default all.
	Parallel int `json:"parallel,omitempty"`
}

// BuildImageResult is what BuildImage did, per host.
type BuildImageResult struct {
	Hosts   []HostOutcome            `json:"hosts"`
	Builder string                   `json:"builder"`
	Image   activities.ImageBuilt    `json:"image"`
	Loaded  []activities.ImageLoaded `json:"loaded,omitempty"`
}

func (r *BuildImageResult) hostOutcomes() []HostOutcome { return r.Hosts }

// Phases of a host in BuildImage.
const (
	BuildPhaseBuild = "build"
	BuildPhaseLoad  = "load"
	BuildPhaseDone  = "done"
)

// BuildImageProgress is the result of BuildImage's "progress" query.
type BuildImageProgress struct {
	Tag     string                `json:"tag"`
	Builder string                `json:"builder"`
	Image   activities.ImageBuilt `json:"image"`
	Hosts   []HostProgress        `json:"hosts"`
}

// BuildImage builds an image (step kind buildImage) on one of the step's hosts
// from a build context on the worker, unless that host has it from the same
// context already, then loads it into every other host that lacks it (docker
// save | docker load through the worker: no registry). Each host's outcome:
// built or loaded (changed), had it (unchanged), or failed.
func BuildImage(ctx workflow.Context, in BuildImageInput) (*BuildImageResult, error) {
	// Step 1. Check the input before touching any host.
	names, err := checkHosts(in.Hosts)
	if err != nil {
		return nil, invalidInput(err.Error())
	}
	if err := in.Build.Normalize(playbooks.Scope{Hosts: names}).Err("build"); err != nil {
		return nil, invalidInput(err.Error())
	}
	b := in.Build
	builder := in.Hosts[0]
	if b.Builder != "" {
		builder, _ = hostNamed(in.Hosts, b.Builder)
	}
	res := &BuildImageResult{Builder: builder.Name}

	// Step 2. Publish progress.
	t := newHostTracker(in.Hosts, BuildPhaseBuild)
	prog := &BuildImageProgress{Tag: b.Tag, Builder: builder.Name, Hosts: t.hosts}
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*BuildImageProgress, error) {
		return prog, nil
	}, workflow.QueryHandlerOptions{Description: "the build and the image's load on each host"}); err != nil {
		return nil, err
	}
	publish := func() {
		prog.Image = res.Image
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**image %s** built on %s: %s\n\n%s", b.Tag, builder.Name,
			strings.ReplaceAll(res.Image.Message, "|", "\\|"), t.table(false)))
	}
	bi := t.index(builder.Name)
	finish := func() (*BuildImageResult, error) {
		res.Hosts = t.outcomes()
		publish()
		if ctx.Err() != nil {
			return res, temporal.NewCanceledError("BuildImage cancelled")
		}
		return res, nil
	}

	// Step 3. Build on the builder (nothing when it has the image from the same
	// context).
	t.begin(bi, BuildPhaseBuild)
	publish()
	if err := workflow.ExecuteActivity(withSummary(ctx, buildOptions, "build "+b.Tag+" on "+builder.Name), swarmActs.BuildImage,
		activities.BuildImageRequest{Host: builder, Build: b}).Get(ctx, &res.Image); err != nil {
		t.fail(bi, BuildPhaseBuild, errorMessage(err))
		for i := range in.Hosts {
			if i != bi {
				t.finish(i, HostSkipped, "not loaded: the build failed")
			}
		}
		return finish()
	}
	t.note(bi, res.Image.Built, res.Image.Message)
	t.succeed(bi, BuildPhaseDone)
	publish()

	// Step 4. Load it into the other hosts, from the builder.
	var others []int
	for i := range in.Hosts {
		if i != bi {
			others = append(others, i)
		}
	}
	loaded := make([]activities.ImageLoaded, len(others))
	started := eachHost(ctx, len(others), in.Parallel, func(ctx workflow.Context, k int) {
		i := others[k]
		h := in.Hosts[i]
		t.begin(i, BuildPhaseLoad)
		publish()
		err := workflow.ExecuteActivity(withSummary(ctx, imageLoadOptions, "load "+b.Tag+" on "+h.Name), swarmActs.DistributeImage,
			activities.DistributeImageRequest{From: builder, To: h, Image: b.Tag, ImageID: res.Image.ImageID}).Get(ctx, &loaded[k])
		if err != nil {
			t.fail(i, BuildPhaseLoad, errorMessage(err))
		} else {
			t.note(i, loaded[k].Changed, loaded[k].Message)
			t.succeed(i, BuildPhaseDone)
			res.Loaded = append(res.Loaded, loaded[k])
		}
		publish()
	})
	for _, i := range others[started:] {
		t.finish(i, HostSkipped, "not loaded: the run was cancelled")
	}
	return finish()
}
