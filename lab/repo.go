package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// The lab's apt repository. Nodes install packages (docker.io and what it depends on)
// only from it, never from Debian's mirror: their apt sources name nothing else. It is
// a flat repository (`deb [trusted=yes] http://ADDR:PORT/ ./`) of .deb files cached on
// this machine by `lab repo` (or `lab images`), at installation time and shared by
// every lab; `lab up` serves it from the lab's container NAME-repo
// (labSpec.RepoContainer, which carries labelLab, so `lab down` removes it) at a fixed
// address of the lab network (labSpec.RepoAddress).
const (
	repoPort = 8080
	// labelRepo on the repository container is the key of what it serves (cache
	// directory and server binary); a different key recreates the container.
	labelRepo = "io.clusterflow.lab.repo"
	// repoPackages are what the cache holds, with every dependency apt picks for them
	// on the node image (--no-install-recommends, as InstallDocker installs).
	repoPackages = "docker.io"
	// repoExtraPackages are what the benchmark's Ansible run installs on the nodes
	// (bench/: Python for Ansible's modules). They are kept in extra/, which the
	// index covers but the offline bundle (the .deb files at the top) does not.
	repoExtraPackages = "python3 python3-apt python3-docker"
	// envNoFetch set to 1 makes `lab up` fail instead of downloading a missing package
	// cache: the tests set it, so that a test run never reaches Debian's mirror.
	envNoFetch = "CLUSTERFLOW_LAB_NO_FETCH"
)

// repoURL is the lab repository's URL as the lab's nodes see it.
func (s labSpec) repoURL() string { return fmt.Sprintf("http://%s:%d/", s.RepoAddress(), repoPort) }

// nodeAptSources replaces /etc/apt/sources.list.d/debian.sources in every node: the
// lab repository and nothing else.
func (s labSpec) nodeAptSources() string {
	return `# Written by ` + "`lab up`" + `: the lab's own flat repository (lab/README.md). Nodes reach no
# other package source.
Types: deb
URIs: ` + s.repoURL() + `
Suites: ./
Trusted: yes
`
}

//go:embed reposerver/main.go
var repoServerSource []byte

// repoCacheDir is where the package cache for a node image lives: one directory per
// image ID, since the dependencies apt picks depend on what the image has installed.
func repoCacheDir(imageID string) (string, error) {
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "apt-repo", shortID(imageID)), nil
}

// repoComplete tells whether dir holds a finished cache for imageID.
func repoComplete(dir, imageID string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "IMAGE"))
	if err != nil || strings.TrimSpace(string(b)) != imageID {
		return false
	}
	for _, f := range []string{"Packages", "Release", "SHA256SUMS"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	b, err = os.ReadFile(filepath.Join(dir, "PACKAGES"))
	return err == nil && string(b) == repoPackageList()
}

// repoPackageList is what a cache was made for (its PACKAGES file): a cache made
// for another list is made again.
func repoPackageList() string { return repoPackages + "\nextra: " + repoExtraPackages + "\n" }

// ensureRepoCache returns the package cache of the node image imageRef, making it
// when missing (unless fetch is false): in a throwaway container of the image on the
// engine's default bridge, apt downloads the packages from the image's own sources
// (Debian's mirror). This is an installation step, like building the images.
func ensureRepoCache(ctx context.Context, cli *client.Client, out io.Writer, imageRef string, fetch bool) (string, error) {
	img, err := cli.ImageInspect(ctx, imageRef)
	if err != nil {
		return "", fmt.Errorf("inspect image %s: %w", imageRef, err)
	}
	dir, err := repoCacheDir(img.ID)
	if err != nil {
		return "", err
	}
	if repoComplete(dir, img.ID) {
		fmt.Fprintf(out, "apt repository: cached in %s\n", dir)
		return dir, nil
	}
	if !fetch {
		return "", fmt.Errorf("no package cache for %s (%s) in %s, and %s=1 forbids downloading one: run `go run ./lab repo` first (make test-lab and make demo do)",
			imageRef, shortID(img.ID), dir, envNoFetch)
	}
	start := time.Now()
	fmt.Fprintf(out, "apt repository: downloading %s and its dependencies for %s once (about 30 s) ...\n", repoPackages, imageRef)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), shortID(img.ID)+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := downloadDebs(ctx, cli, imageRef, tmp, repoPackages); err != nil {
		return "", err
	}
	extra := filepath.Join(tmp, "extra")
	if err := os.Mkdir(extra, 0o755); err != nil {
		return "", err
	}
	if err := downloadDebs(ctx, cli, imageRef, extra, repoExtraPackages); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "PACKAGES"), []byte(repoPackageList()), 0o644); err != nil {
		return "", err
	}
	n, err := writeRepoIndex(ctx, tmp)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "IMAGE"), []byte(img.ID+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	fmt.Fprintf(out, "apt repository: %d packages cached in %s in %s\n", n, dir, since(start))
	return dir, nil
}

// downloadDebs has apt download packages (and what they need on the image) in a
// throwaway container of imageRef and copies the .deb files it got into dir.
func downloadDebs(ctx context.Context, cli *client.Client, imageRef, dir, packages string) error {
	name := fmt.Sprintf("clusterflow-lab-repo-fetch-%d", os.Getpid())
	created, err := cli.ContainerCreate(ctx, &container.Config{
		Image: imageRef, Entrypoint: []string{"sleep", "900"},
	}, &container.HostConfig{AutoRemove: false}, nil, nil, name)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	defer func() {
		rmCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = cli.ContainerRemove(rmCtx, created.ID, container.RemoveOptions{Force: true})
	}()
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	const fetch = `set -e
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --download-only --no-install-recommends "$@" >/dev/null`
	argv := append([]string{"sh", "-c", fetch, "sh"}, strings.Fields(packages)...)
	if _, err := execOK(ctx, cli, name, argv...); err != nil {
		return fmt.Errorf("download %s: %w", packages, err)
	}
	rc, _, err := cli.CopyFromContainer(ctx, created.ID, "/var/cache/apt/archives/.")
	if err != nil {
		return fmt.Errorf("copy the packages out of %s: %w", name, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	found := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the packages of %s: %w", name, err)
		}
		base := path.Base(hdr.Name)
		if hdr.Typeflag != tar.TypeReg || !strings.HasSuffix(base, ".deb") || path.Base(path.Dir(hdr.Name)) == "partial" {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, base), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		found++
	}
	if found == 0 {
		return fmt.Errorf("apt downloaded no .deb for %s in %s", packages, name)
	}
	return nil
}

// writeRepoIndex writes the flat repository's Packages and Release files for the .deb
// files of dir, and a SHA256SUMS file (the offline bundle format of InstallDocker).
// Each Packages stanza is the package's control file (dpkg-deb -f) plus Filename,
// Size and SHA256; Release lists Packages with its size and SHA-256. It returns the
// number of packages.
func writeRepoIndex(ctx context.Context, dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var debs []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".deb") {
			debs = append(debs, e.Name())
		}
	}
	sort.Strings(debs)
	top := len(debs) // SHA256SUMS lists these: the offline bundle
	if more, err := filepath.Glob(filepath.Join(dir, "extra", "*.deb")); err == nil {
		sort.Strings(more)
		for _, m := range more {
			if name := filepath.Base(m); !slices.Contains(debs[:top], name) {
				debs = append(debs, "extra/"+name)
			}
		}
	}
	if len(debs) == 0 {
		return 0, fmt.Errorf("no .deb files in %s", dir)
	}
	var packages, sums bytes.Buffer
	for i, name := range debs {
		p := filepath.Join(dir, name)
		control, err := exec.CommandContext(ctx, "dpkg-deb", "-f", p).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, ee.Stderr)
			}
			return 0, fmt.Errorf("dpkg-deb -f %s (dpkg-deb comes with dpkg): %w", p, err)
		}
		sum, err := fileSHA256(p)
		if err != nil {
			return 0, err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return 0, err
		}
		size := fi.Size()
		packages.Write(bytes.TrimRight(control, "\n"))
		fmt.Fprintf(&packages, "\nFilename: ./%s\nSize: %d\nSHA256: %s\n\n", name, size, sum)
		if i < top {
			fmt.Fprintf(&sums, "%s  %s\n", sum, name)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Packages"), packages.Bytes(), 0o644); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), sums.Bytes(), 0o644); err != nil {
		return 0, err
	}
	h := sha256.Sum256(packages.Bytes())
	release := fmt.Sprintf("Origin: clusterflow-lab\nLabel: clusterflow-lab\nSuite: lab\nCodename: lab\nDate: %s\nDescription: the clusterflow lab's local packages (go run ./lab repo)\nSHA256:\n %s %d Packages\n",
		time.Now().UTC().Format(time.RFC1123), hex.EncodeToString(h[:]), packages.Len())
	if err := os.WriteFile(filepath.Join(dir, "Release"), []byte(release), 0o644); err != nil {
		return 0, err
	}
	return len(debs), nil
}

// ensureRepoServer returns the path of the static repository server binary, built from
// the embedded lab/reposerver/main.go with the local Go toolchain when the cache has
// none for this source (standard library only: nothing is downloaded).
func ensureRepoServer(ctx context.Context, out io.Writer) (string, error) {
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(repoServerSource)
	bin := filepath.Join(dir, "apt-repo", "server-"+hex.EncodeToString(h[:])[:12], "reposerver")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the lab repository server %s is not built and there is no go on PATH to build it", bin)
	}
	work, err := os.MkdirTemp("", "clusterflow-reposerver-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte("module reposerver\n\ngo 1.22\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(work, "main.go"), repoServerSource, 0o644); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	start := time.Now()
	tmp := bin + fmt.Sprintf(".tmp-%d", os.Getpid())
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, ".")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOTOOLCHAIN=local", "GOFLAGS=", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("build the lab repository server: %w\n%s", err, b)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	fmt.Fprintf(out, "apt repository: server built in %s: %s\n", since(start), bin)
	return bin, nil
}

// ensureRepo makes sure the package cache and the server exist (see ensureRepoCache for
// fetch) and returns both paths.
func ensureRepo(ctx context.Context, cli *client.Client, out io.Writer, fetch bool) (dir, server string, err error) {
	if dir, err = ensureRepoCache(ctx, cli, out, nodeImage, fetch); err != nil {
		return "", "", err
	}
	if server, err = ensureRepoServer(ctx, out); err != nil {
		return "", "", err
	}
	return dir, server, nil
}

// ensureRepoContainer runs the repository container on the lab network, serving dir
// with server, and waits until it answers. A container serving something else is
// replaced; a stopped one is started.
func (l *lab) ensureRepoContainer(ctx context.Context, dir, server string) error {
	key := dir + " " + server
	repoContainer := l.spec.RepoContainer()
	have, err := l.cli.ContainerInspect(ctx, repoContainer)
	switch {
	case err == nil && (have.Config == nil || have.Config.Labels[labelLab] != l.spec.Name):
		return fmt.Errorf("container %s exists but is not lab %s's: remove it, or choose another --name", repoContainer, l.spec.Name)
	case err == nil && have.Config.Labels[labelRepo] == key:
		if have.State == nil || !have.State.Running {
			if err := l.cli.ContainerStart(ctx, have.ID, container.StartOptions{}); err != nil {
				return fmt.Errorf("start %s: %w", repoContainer, err)
			}
			fmt.Fprintf(l.out, "repository %s: started\n", repoContainer)
		}
	case err == nil:
		if err := l.cli.ContainerRemove(ctx, have.ID, container.RemoveOptions{Force: true}); err != nil {
			return fmt.Errorf("replace %s: %w", repoContainer, err)
		}
		fallthrough
	case cerrdefs.IsNotFound(err):
		if err := l.createRepoContainer(ctx, dir, server, key); err != nil {
			return err
		}
	default:
		return fmt.Errorf("inspect %s: %w", repoContainer, err)
	}
	return l.waitRepo(ctx)
}

func (l *lab) createRepoContainer(ctx context.Context, dir, server, key string) error {
	useInit := true
	lbl := l.spec.labels(nil)
	lbl[labelRepo] = key
	cfg := &container.Config{
		Hostname:   "repo",
		Image:      nodeImage,
		User:       "65534:65534",
		Entrypoint: []string{"/usr/local/bin/clusterflow-lab-repo", "-dir", "/srv/repo", "-addr", fmt.Sprintf(":%d", repoPort)},
		Labels:     lbl,
	}
	host := &container.HostConfig{
		Init:           &useInit,
		CapDrop:        []string{"ALL"},
		ReadonlyRootfs: true,
		Binds: []string{
			dir + ":/srv/repo:ro",
			server + ":/usr/local/bin/clusterflow-lab-repo:ro",
		},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
	}
	nw := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		l.spec.Network(): {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: l.spec.RepoAddress().String()}, Aliases: []string{"repo"}},
	}}
	name := l.spec.RepoContainer()
	created, err := l.cli.ContainerCreate(ctx, cfg, host, nw, nil, name)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if err := l.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	fmt.Fprintf(l.out, "repository %s: created at %s serving %s\n", name, l.spec.repoURL(), dir)
	return nil
}

// waitRepo waits until the repository answers for its Release file (from this
// machine, over the lab bridge).
func (l *lab) waitRepo(ctx context.Context) error {
	repoURL, repoContainer := l.spec.repoURL, l.spec.RepoContainer()
	// No proxy: the repository is on the lab bridge, reached directly.
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, repoURL()+"Release", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the lab repository %s does not answer after 20s: %w (docker logs %s)", repoURL(), err, repoContainer)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
