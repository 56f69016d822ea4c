package activities

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// LoadImageRequest asks for Image on Host, loaded from Tarball (a `docker save`
// archive on the worker's side) unless the host has it already.
type LoadImageRequest struct {
	Host    remote.Host `json:"host"`
	Tarball string      `json:"tarball"` // absolute path on the worker
	Image   string      `json:"image"`   // reference, such as web:2
}

// ImageLoaded is what LoadImage did on one host.
type ImageLoaded struct {
	Host    string `json:"host"`
	ImageID string `json:"imageId"`
	Changed bool   `json:"changed"`
	Message string `json:"message"`
}

// LoadImage loads an image tarball into the host's engine, through the Engine API
// over SSH (the tarball streams from the worker; no registry), unless the host has
// the image under that reference with the tarball's image ID already. The result
// is checked: afterwards the reference must name the tarball's image.
func (s *Swarm) LoadImage(ctx context.Context, req LoadImageRequest) (ImageLoaded, error) {
	h := req.Host
	if !rules.WorkerPath(req.Tarball) {
		return ImageLoaded{}, invalidInput(fmt.Sprintf("image tarball %q must be %s on the worker", req.Tarball, rules.WorkerPathRule))
	}
	if err := s.rem.workerFile("image.load", req.Tarball, workerfs.Content); err != nil {
		return ImageLoaded{}, err
	}
	id, err := tarballImageID(req.Tarball, req.Image)
	if err != nil {
		return ImageLoaded{}, err
	}
	cli, err := s.rem.dockerAPI(h)
	if err != nil {
		return ImageLoaded{}, err
	}
	defer cli.Close()
	have, err := imageID(ctx, h, cli, req.Image)
	if err != nil {
		return ImageLoaded{}, err
	}
	if have == id {
		return ImageLoaded{Host: h.Name, ImageID: id, Message: "has " + req.Image + " (" + short(strings.TrimPrefix(id, "sha256:")) + ")"}, nil
	}
	f, err := os.Open(req.Tarball)
	if err != nil {
		return ImageLoaded{}, imageTarball("image tarball: " + err.Error())
	}
	defer f.Close()
	st, _ := f.Stat()
	begin := time.Now()
	if _, err := loadInto(ctx, h, cli, f, req.Image, id); err != nil {
		return ImageLoaded{}, err
	}
	return ImageLoaded{Host: h.Name, ImageID: id, Changed: true, Message: fmt.Sprintf("loaded %s (%d MB in %s)",
		req.Image, st.Size()>>20, time.Since(begin).Round(100*time.Millisecond))}, nil
}

// loadInto loads a `docker save` stream into h's engine (heartbeating with the
// bytes sent) and checks that image then names the image ID want. It returns the
// bytes sent.
func loadInto(ctx context.Context, h remote.Host, cli *client.Client, r io.Reader, image, want string) (int64, error) {
	pr := &progressReader{r: r, ctx: ctx}
	resp, err := cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		return pr.n, apiFailure(ctx, h, "load image "+image, err)
	}
	defer resp.Body.Close()
	if err := loadMessages(resp.Body); err != nil {
		return pr.n, swarmAPI(h, "could not load image %s: %v", image, err)
	}
	have, err := imageID(ctx, h, cli, image)
	if err != nil {
		return pr.n, err
	}
	if have != want {
		return pr.n, swarmAPI(h, "loaded %s, but it names image %s, not %s", image, short(have), short(want))
	}
	return pr.n, nil
}

// imageID is the ID of the image ref names on the host, or "" when none.
func imageID(ctx context.Context, h remote.Host, cli *client.Client, ref string) (string, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	img, err := cli.ImageInspect(actx, ref)
	switch {
	case cerrdefs.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", apiFailure(ctx, h, "look up image "+ref, err)
	}
	return img.ID, nil
}

// loadMessages reads the engine's JSON messages and returns the first error.
func loadMessages(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
		if m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
	}
}

// progressReader heartbeats with the bytes sent so far.
type progressReader struct {
	r    io.Reader
	ctx  context.Context
	n    int64
	last time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if time.Since(p.last) > 2*time.Second {
		p.last = time.Now()
		recordHeartbeat(p.ctx, fmt.Sprintf("%d MB sent", p.n>>20))
	}
	return n, err
}

// tarballImageID reads a `docker save` archive's manifest.json and returns the ID
// (sha256:<config digest>) of the image tagged ref in it.
func tarballImageID(file, ref string) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", imageTarball(fmt.Sprintf("image tarball %s: ", file) + fmt.Sprintf(format, args...))
	}
	f, err := os.Open(file)
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return fail("no manifest.json: not a `docker save` archive")
		}
		if err != nil {
			return fail("%v", err)
		}
		if path.Clean(hdr.Name) != "manifest.json" {
			continue
		}
		var manifest []struct {
			Config   string
			RepoTags []string
		}
		if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&manifest); err != nil {
			return fail("manifest.json: %v", err)
		}
		var tags []string
		for _, m := range manifest {
			if slices.Contains(m.RepoTags, ref) || slices.Contains(m.RepoTags, "docker.io/library/"+ref) {
				digest := strings.TrimSuffix(path.Base(m.Config), ".json")
				if len(digest) != 64 {
					return fail("manifest.json: config %q is not named by its digest", m.Config)
				}
				return "sha256:" + digest, nil
			}
			tags = append(tags, m.RepoTags...)
		}
		return fail("holds %s, not %s: save the image under the name the step gives (docker save -o FILE %s)", strings.Join(tags, ", "), ref, ref)
	}
}
