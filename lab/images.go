package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// buildFiles are the Dockerfiles of the lab images and the files they copy. Embedding
// them makes `lab` self-contained and gives a stable content hash to decide rebuilds.
//
//go:embed node.Dockerfile node-docker.Dockerfile node
var buildFiles embed.FS

// basePackages are installed into the debootstrap base image: everything the node image
// wants, so that building it fetches no package index at all. They must match
// NODE_PACKAGES in node.Dockerfile (a test checks).
var basePackages = []string{
	"openssh-server", "openssh-sftp-server", "iproute2", "iputils-ping", "procps",
	"ca-certificates", "sudo", "iptables", "less",
}

// debianSources replaces debootstrap's sources.list: the same suites as the official
// debian:bookworm image. They are used only at installation time (building the
// prebaked image, `lab repo` downloading the lab repository's packages): `lab up`
// replaces them in every node with the lab repository (nodeAptSources), so nodes
// never reach Debian's mirror.
const debianSources = `Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`

// imageSpec is one image that `lab` builds from embedded files.
type imageSpec struct {
	Tag        string
	Dockerfile string   // path in buildFiles, sent as the Dockerfile
	Files      []string // further paths of buildFiles (directories expand) in the context
	Parent     *imageSpec
}

var (
	nodeImageSpec     = imageSpec{Tag: nodeImage, Dockerfile: "node.Dockerfile", Files: []string{"node"}}
	prebakedImageSpec = imageSpec{Tag: prebakedImage, Dockerfile: "node-docker.Dockerfile", Parent: &nodeImageSpec}
)

// contextFiles lists the build context of the image, sorted.
func (s imageSpec) contextFiles() ([]string, error) {
	files := []string{s.Dockerfile}
	for _, root := range s.Files {
		err := fs.WalkDir(buildFiles, root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(files)
	return files, nil
}

// hash is the content hash of the image's build context and of its parent's: a change
// in any of them rebuilds the image.
func (s imageSpec) hash() (string, error) {
	h := sha256.New()
	if s.Parent != nil {
		ph, err := s.Parent.hash()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "parent %s\n", ph)
	}
	files, err := s.contextFiles()
	if err != nil {
		return "", err
	}
	for _, f := range files {
		data, err := buildFiles.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "file %s %d\n", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// contextTar is the build context as a tar stream, scripts executable.
func (s imageSpec) contextTar() (io.Reader, error) {
	files, err := s.contextFiles()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		data, err := buildFiles.ReadFile(f)
		if err != nil {
			return nil, err
		}
		mode := int64(0o644)
		if bytes.HasPrefix(data, []byte("#!")) {
			mode = 0o755
		}
		hdr := &tar.Header{Name: f, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}

// imageBuilder makes the lab images on the local engine.
type imageBuilder struct {
	cli     *client.Client
	out     io.Writer // progress, one line per step
	verbose io.Writer // full build output; io.Discard unless asked for
	rebuild bool      // build even when the hash label matches
}

// ensure makes sure the image exists and was built from the current files, building it
// (and its parents, and the base image when needed) otherwise.
func (b *imageBuilder) ensure(ctx context.Context, s imageSpec) error {
	want, err := s.hash()
	if err != nil {
		return fmt.Errorf("hash build files of %s: %w", s.Tag, err)
	}
	if s.Parent != nil {
		if err := b.ensure(ctx, *s.Parent); err != nil {
			return err
		}
	}
	old, err := b.cli.ImageInspect(ctx, s.Tag)
	switch {
	case err == nil && old.Config != nil && old.Config.Labels[labelContextHash] == want && !b.rebuild:
		fmt.Fprintf(b.out, "image %s: up to date (%s)\n", s.Tag, shortID(old.ID))
		return nil
	case err != nil && !cerrdefs.IsNotFound(err):
		return fmt.Errorf("inspect image %s: %w", s.Tag, err)
	}
	if s.Parent == nil {
		if err := b.ensureBase(ctx); err != nil {
			return err
		}
	}
	start := time.Now()
	fmt.Fprintf(b.out, "image %s: building from lab/%s ...\n", s.Tag, s.Dockerfile)
	buildCtx, err := s.contextTar()
	if err != nil {
		return fmt.Errorf("build context of %s: %w", s.Tag, err)
	}
	resp, err := b.cli.ImageBuild(ctx, buildCtx, build.ImageBuildOptions{
		Tags:        []string{s.Tag},
		Dockerfile:  s.Dockerfile,
		Labels:      map[string]string{labelContextHash: want},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("build %s: %w", s.Tag, err)
	}
	err = readStream(resp.Body, b.verbose)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("build %s: %w", s.Tag, err)
	}
	built, err := b.cli.ImageInspect(ctx, s.Tag)
	if err != nil {
		return fmt.Errorf("inspect built image %s: %w", s.Tag, err)
	}
	fmt.Fprintf(b.out, "image %s: built %s in %s\n", s.Tag, shortID(built.ID), since(start))
	// Earlier builds that lost their tag and that no container uses any more; an error
	// only means they stay.
	_, _ = b.cli.ImagesPrune(ctx, filters.NewArgs(filters.Arg("dangling", "true"), filters.Arg("label", labelContextHash)))
	return nil
}

// ensureBase makes sure debian:bookworm exists. Where none can be pulled, it is made
// from Debian's packages with debootstrap, through a root file system tarball cached
// in cacheDir() so that removing the image does not cost another debootstrap.
func (b *imageBuilder) ensureBase(ctx context.Context) error {
	if _, err := b.cli.ImageInspect(ctx, baseImage); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect image %s: %w", baseImage, err)
	}
	dir, err := cacheDir()
	if err != nil {
		return err
	}
	tarball := filepath.Join(dir, "debian-bookworm-minbase-"+basePackagesHash()[:12]+".tar")
	if _, err := os.Stat(tarball); err != nil {
		if err := b.debootstrap(ctx, dir, tarball); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(b.out, "image %s: using cached root file system %s\n", baseImage, tarball)
	}
	start := time.Now()
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	resp, err := b.cli.ImageImport(ctx, image.ImportSource{Source: f, SourceName: "-"}, baseImage, image.ImportOptions{
		Message: "debootstrap --variant=minbase bookworm (clusterflow lab)",
		Changes: []string{`CMD ["bash"]`, "LABEL " + labelBase + "=debootstrap-minbase"},
	})
	if err != nil {
		return fmt.Errorf("import %s as %s: %w", tarball, baseImage, err)
	}
	err = readStream(resp, b.verbose)
	resp.Close()
	if err != nil {
		return fmt.Errorf("import %s as %s: %w", tarball, baseImage, err)
	}
	fmt.Fprintf(b.out, "image %s: imported in %s\n", baseImage, since(start))
	return nil
}

// basePackagesHash names the cached tarball after what went into it.
func basePackagesHash() string {
	h := sha256.Sum256([]byte("bookworm minbase " + strings.Join(basePackages, ",") + "\n" + debianSources))
	return hex.EncodeToString(h[:])
}

// debootstrap builds the base root file system and writes it to tarball.
func (b *imageBuilder) debootstrap(ctx context.Context, dir, tarball string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("no %s image: making one with debootstrap needs root (or `docker pull %s` where a registry is reachable)", baseImage, baseImage)
	}
	bin, err := exec.LookPath("debootstrap")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/debootstrap"); err != nil {
			return fmt.Errorf("no %s image and no debootstrap to make one: run lab/prereqs.sh", baseImage)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(dir, "rootfs-")
	if err != nil {
		return err
	}
	defer removeRootfs(work)
	rootfs := filepath.Join(work, "rootfs")
	logPath := filepath.Join(dir, "debootstrap.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()

	mirror := os.Getenv("CLUSTERFLOW_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	start := time.Now()
	fmt.Fprintf(b.out, "image %s: none here; debootstrap bookworm from %s (about a minute; log: %s) ...\n", baseImage, mirror, logPath)
	cmd := exec.CommandContext(ctx, bin, "--variant=minbase", "--components=main",
		"--include="+strings.Join(basePackages, ","), "bookworm", rootfs, mirror)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap: %w; last lines of %s:\n%s", err, logPath, tailFile(logPath, 15))
	}
	if err := cleanRootfs(rootfs); err != nil {
		return fmt.Errorf("clean root file system: %w", err)
	}
	tmp := tarball + ".part"
	tarCmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=security.capability",
		"-C", rootfs, "-cf", tmp, ".")
	if out, err := tarCmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tar root file system: %w: %s", err, out)
	}
	if err := os.Rename(tmp, tarball); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "image %s: root file system made in %s, cached as %s\n", baseImage, since(start), tarball)
	return nil
}

// cleanRootfs removes from a fresh debootstrap what must not be in an image: the host
// keys the openssh-server package generated, files copied from this machine, caches.
func cleanRootfs(rootfs string) error {
	var remove []string
	for _, pattern := range []string{
		"etc/ssh/ssh_host_*", "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin",
		"var/lib/apt/lists/*_*", "etc/apt/sources.list",
	} {
		m, err := filepath.Glob(filepath.Join(rootfs, pattern))
		if err != nil {
			return err
		}
		remove = append(remove, m...)
	}
	for _, p := range remove {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	// Engine-managed or per-machine files: leave them empty.
	for _, p := range []string{"etc/hostname", "etc/resolv.conf", "etc/machine-id"} {
		if err := os.WriteFile(filepath.Join(rootfs, p), nil, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(rootfs, "etc/apt/sources.list.d/debian.sources"), []byte(debianSources), 0o644)
}

// removeRootfs deletes a debootstrap work directory, first unmounting what a failed
// debootstrap may have left mounted in it (proc, sys), so nothing outside is touched.
func removeRootfs(dir string) {
	if data, err := os.ReadFile("/proc/self/mounts"); err == nil {
		var under []string
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 1 && strings.HasPrefix(fields[1], dir+"/") {
				under = append(under, fields[1])
			}
		}
		sort.Sort(sort.Reverse(sort.StringSlice(under)))
		for _, m := range under {
			if out, err := exec.Command("umount", "-l", m).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "lab: umount %s: %v: %s; leaving %s in place\n", m, err, out, dir)
				return
			}
		}
	}
	_ = os.RemoveAll(dir)
}

// tailFile returns the last n lines of a file, for error messages.
func tailFile(p string, n int) string {
	data, err := os.ReadFile(p)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// shortID is the first 12 hex digits of an image or container ID.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// since formats the time elapsed since start to a tenth of a second.
func since(start time.Time) string {
	return time.Since(start).Round(100 * time.Millisecond).String()
}
