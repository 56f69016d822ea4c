package activities

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// This file holds the activities of the BuildImage procedure: BuildImage sends a
// build context from the worker to one host's engine (the Engine API over SSH)
// and builds it there; DistributeImage streams the image from that host to
// another (`docker save` on one, `docker load` on the other, through the worker:
// no registry, no file left on the worker).

// LabelContext is the label of a built image that holds its context's digest.
const LabelContext = "io.clusterflow.build.context"

// BuildImageRequest asks for the step's image on Host.
type BuildImageRequest struct {
	Host  remote.Host              `json:"host"`
	Build playbooks.BuildImageStep `json:"build"`
}

// ImageBuilt is what BuildImage did.
type ImageBuilt struct {
	Host    string `json:"host"`
	Tag     string `json:"tag"`
	ImageID string `json:"imageId"`
	// Digest is the context's: files, modes, Dockerfile name, args, target.
	Digest  string `json:"digest"`
	Built   bool   `json:"built"`
	Message string `json:"message"`
}

// BuildImage builds the image unless the host has it under the tag from the same
// context (the label LabelContext holds the digest). The build's output lines
// are heartbeats; a failed build is final, with the builder's last lines.
func (s *Swarm) BuildImage(ctx context.Context, req BuildImageRequest) (ImageBuilt, error) {
	h, b := req.Host, req.Build
	if ps := b.Normalize(playbooks.Scope{}); len(ps) > 0 {
		return ImageBuilt{}, invalidInput("buildImage: " + ps.Error())
	}
	dir, err := openPlaybookDir(s.rem.files(), b.Dir)
	if err != nil {
		return ImageBuilt{}, err
	}
	defer dir.Close()
	entries, err := dir.contextFiles(b.Context)
	if err != nil {
		return ImageBuilt{}, err
	}
	if !slices.ContainsFunc(entries, func(e contextEntry) bool { return e.name == b.Dockerfile && e.mode.IsRegular() }) {
		return ImageBuilt{}, invalidInput(fmt.Sprintf("buildImage: %s has no file %s", b.Context, b.Dockerfile))
	}
	digest, err := dir.contextDigest(b.Context, entries, buildSettings(b))
	if err != nil {
		return ImageBuilt{}, err
	}
	out := ImageBuilt{Host: h.Name, Tag: b.Tag, Digest: digest}
	cli, err := s.rem.dockerAPI(h)
	if err != nil {
		return out, err
	}
	defer cli.Close()
	id, label, err := builtImage(ctx, h, cli, b.Tag)
	if err != nil {
		return out, err
	}
	if id != "" && label == digest {
		out.ImageID, out.Message = id, fmt.Sprintf("has %s (%s) from the same context", b.Tag, short(strings.TrimPrefix(id, "sha256:")))
		return out, nil
	}
	var auths map[string]registry.AuthConfig
	if b.RegistryAuth != nil {
		cfg, err := s.authConfig(b.Dir, b.RegistryAuth)
		if err != nil {
			return out, err
		}
		auths = map[string]registry.AuthConfig{b.RegistryAuth.Server: cfg}
	}
	args := map[string]*string{}
	for _, k := range sortedKeys(b.Args) {
		v := b.Args[k]
		args[k] = &v
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(dir.writeContext(pw, b.Context, entries)) }()
	begin := time.Now()
	var last atomic.Value
	last.Store("sending the build context")
	stop := heartbeats(ctx, defaultHeartbeat, func() any { return last.Load() })
	defer stop()
	resp, err := cli.ImageBuild(ctx, pr, build.ImageBuildOptions{
		Tags: []string{b.Tag}, Dockerfile: b.Dockerfile, BuildArgs: args, Target: b.Target, AuthConfigs: auths,
		Labels: map[string]string{LabelContext: digest}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
	})
	if err != nil {
		pr.CloseWithError(err)
		return out, apiFailure(ctx, h, "build "+b.Tag, err)
	}
	defer resp.Body.Close()
	if err := buildMessages(resp.Body, func(line string) { last.Store(line) }); err != nil {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		return out, imageBuildFailed(h, "building %s failed: %v", b.Tag, err)
	}
	if id, label, err = builtImage(ctx, h, cli, b.Tag); err != nil {
		return out, err
	}
	if id == "" || label != digest {
		return out, swarmAPI(h, "built %s, but the engine does not show it with the context's label", b.Tag)
	}
	out.ImageID, out.Built = id, true
	out.Message = fmt.Sprintf("built %s (%s) in %s", b.Tag, short(strings.TrimPrefix(id, "sha256:")), time.Since(begin).Round(100*time.Millisecond))
	return out, nil
}

// buildSettings are the parts of a build beside its files that decide the image.
func buildSettings(b playbooks.BuildImageStep) []string {
	out := []string{"dockerfile=" + b.Dockerfile, "target=" + b.Target}
	for _, k := range sortedKeys(b.Args) {
		out = append(out, "arg:"+k+"="+b.Args[k])
	}
	return out
}

// builtImage is the ID and context label of the image tag names on h ("" when none).
func builtImage(ctx context.Context, h remote.Host, cli *client.Client, tag string) (id, label string, err error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	img, err := cli.ImageInspect(actx, tag)
	switch {
	case cerrdefs.IsNotFound(err):
		return "", "", nil
	case err != nil:
		return "", "", apiFailure(ctx, h, "look up image "+tag, err)
	}
	if img.Config != nil {
		label = img.Config.Labels[LabelContext]
	}
	return img.ID, label, nil
}

// buildTail is how many of the builder's last lines a failure shows.
const buildTail = 8

// buildMessages reads the builder's JSON stream, giving each line to seen, and
// returns its error with the lines before it.
func buildMessages(r io.Reader, seen func(string)) error {
	dec := json.NewDecoder(r)
	var tail []string
	for {
		var m struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		for _, line := range strings.Split(m.Stream, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				tail = append(tail, line)
				if len(tail) > buildTail {
					tail = tail[1:]
				}
				seen(line)
			}
		}
		if msg := cmp.Or(m.ErrorDetail.Message, m.Error); msg != "" {
			if len(tail) > 0 {
				return fmt.Errorf("%s (after: %s)", msg, strings.Join(tail, " | "))
			}
			return errors.New(msg)
		}
	}
}

// DistributeImageRequest asks for Image (ImageID, as From has it) on To.
type DistributeImageRequest struct {
	From    remote.Host `json:"from"`
	To      remote.Host `json:"to"`
	Image   string      `json:"image"`
	ImageID string      `json:"imageId"`
}

// DistributeImage copies an image from one host's engine to another's, streamed
// through the worker (ImageSave from From, ImageLoad into To), unless To has the
// image under that tag already. The result is checked by ID.
func (s *Swarm) DistributeImage(ctx context.Context, req DistributeImageRequest) (ImageLoaded, error) {
	to := req.To
	dst, err := s.rem.dockerAPI(to)
	if err != nil {
		return ImageLoaded{}, err
	}
	defer dst.Close()
	have, err := imageID(ctx, to, dst, req.Image)
	if err != nil {
		return ImageLoaded{}, err
	}
	if have == req.ImageID {
		return ImageLoaded{Host: to.Name, ImageID: have, Message: "has " + req.Image + " (" + short(strings.TrimPrefix(have, "sha256:")) + ")"}, nil
	}
	src, err := s.rem.dockerAPI(req.From)
	if err != nil {
		return ImageLoaded{}, err
	}
	defer src.Close()
	if id, err := imageID(ctx, req.From, src, req.Image); err != nil {
		return ImageLoaded{}, err
	} else if id != req.ImageID {
		return ImageLoaded{}, swarmAPI(req.From, "%s is image %s now, not %s as built: run the step again", req.Image, short(id), short(req.ImageID))
	}
	begin := time.Now()
	stop := heartbeats(ctx, defaultHeartbeat, func() any { return "loading " + req.Image })
	defer stop()
	rc, err := src.ImageSave(ctx, []string{req.Image})
	if err != nil {
		return ImageLoaded{}, apiFailure(ctx, req.From, "save image "+req.Image, err)
	}
	defer rc.Close()
	sent, err := loadInto(ctx, to, dst, rc, req.Image, req.ImageID)
	if err != nil {
		return ImageLoaded{}, err
	}
	return ImageLoaded{Host: to.Name, ImageID: req.ImageID, Changed: true, Message: fmt.Sprintf("loaded %s from %s (%d MB in %s)",
		req.Image, req.From.Name, sent>>20, time.Since(begin).Round(100*time.Millisecond))}, nil
}
