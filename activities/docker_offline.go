package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// This file is InstallDockerPackages' offline source: a directory of .deb files on
// the worker, checked there, uploaded to the host and installed with no network.

// debFile is one .deb of an offline bundle.
type debFile struct {
	Name    string // file name in the bundle
	Pkg     string // package name, from the file name
	Version string
	Arch    string
	Path    string // on the worker
	Size    int64
	SHA256  string
}

// offlineBundle is a checked directory of .deb files.
type offlineBundle struct {
	dir    string
	files  []debFile
	engine debFile // docker-ce or docker.io
	sums   bool    // a SHA256SUMS file was checked
}

func (b *offlineBundle) enginePackages() []string {
	pkgs := []string{b.engine.Pkg}
	if b.engine.Pkg == pkgRepoEngine && slices.ContainsFunc(b.files, func(f debFile) bool { return f.Pkg == pkgRepoCLI }) {
		pkgs = append(pkgs, pkgRepoCLI)
	}
	return pkgs
}

// parseDebName splits a Debian archive file name, NAME_VERSION_ARCH.deb, where the
// version's epoch colon may be written %3a (as apt's cache does).
func parseDebName(name string) (pkg, version, arch string, ok bool) {
	base, found := strings.CutSuffix(name, ".deb")
	if !found {
		return "", "", "", false
	}
	f := strings.Split(base, "_")
	if len(f) != 3 || f[0] == "" || f[1] == "" || f[2] == "" {
		return "", "", "", false
	}
	v, err := url.PathUnescape(f[1])
	if err != nil {
		return "", "", "", false
	}
	return f[0], v, f[2], true
}

// parseSHA256SUMS reads sha256sum(1) output: "HEX  NAME" or "HEX *NAME" per line.
func parseSHA256SUMS(text string) (map[string]string, error) {
	sums := map[string]string{}
	n := 0
	for line := range strings.Lines(text) {
		n++
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sum, name, ok := strings.Cut(line, " ")
		if !ok || len(sum) != 64 {
			return nil, fmt.Errorf("SHA256SUMS line %d is not \"SHA256  FILE\"", n) // the line is not quoted: never a worker file's content
		}
		if _, err := hex.DecodeString(sum); err != nil {
			return nil, fmt.Errorf("SHA256SUMS line %d does not start with a hex SHA-256", n)
		}
		name = strings.TrimPrefix(name, " ")
		name = strings.TrimPrefix(name, "*")
		name = strings.TrimPrefix(name, "./")
		if name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("SHA256SUMS line %d does not name a file of the bundle directory", n)
		}
		if prev, dup := sums[name]; dup && prev != strings.ToLower(sum) {
			return nil, fmt.Errorf("SHA256SUMS lists %s twice with different sums", name)
		}
		sums[name] = strings.ToLower(sum)
	}
	return sums, nil
}

// readBundle checks an offline bundle on the worker: .deb files named
// NAME_VERSION_ARCH.deb, one of them docker-ce or docker.io (at the pinned version,
// when one is given), all of the host's architecture or "all", and, when the
// directory has a SHA256SUMS file, every file listed there with that checksum.
// problem is empty when the bundle is fine.
func readBundle(dir, version, arch string) (b *offlineBundle, problem string) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Sprintf("packages %q must be an absolute directory on the worker", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Sprintf("directory %s does not exist on this worker", dir)
		}
		return nil, err.Error()
	}
	b = &offlineBundle{dir: dir}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".deb") {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Sprintf("%s is not a regular file", filepath.Join(dir, e.Name()))
		}
		pkg, v, a, ok := parseDebName(e.Name())
		if !ok {
			return nil, fmt.Sprintf("%s is not named NAME_VERSION_ARCH.deb", e.Name())
		}
		if a != "all" && arch != "" && a != arch {
			return nil, fmt.Sprintf("%s is for %s, the host is %s", e.Name(), a, arch)
		}
		b.files = append(b.files, debFile{Name: e.Name(), Pkg: pkg, Version: v, Arch: a, Path: filepath.Join(dir, e.Name()), Size: fi.Size()})
	}
	if len(b.files) == 0 {
		return nil, fmt.Sprintf("no .deb files in %s", dir)
	}
	for _, want := range []string{pkgRepoEngine, pkgDistroEngine} {
		if i := slices.IndexFunc(b.files, func(f debFile) bool { return f.Pkg == want }); i >= 0 {
			b.engine = b.files[i]
			break
		}
	}
	if b.engine.Pkg == "" {
		return nil, fmt.Sprintf("%s has neither a %s nor a %s package", dir, pkgRepoEngine, pkgDistroEngine)
	}
	if version != "" && !versionMatches(b.engine.Version, version) {
		return nil, fmt.Sprintf("%s is version %s, not the pinned %s", b.engine.Name, b.engine.Version, version)
	}

	var listed map[string]string
	if text, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS")); err == nil {
		if listed, err = parseSHA256SUMS(string(text)); err != nil {
			return nil, err.Error()
		}
		b.sums = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err.Error()
	}
	for i := range b.files {
		f := &b.files[i]
		sum, err := fileSHA256(f.Path)
		if err != nil {
			return nil, err.Error()
		}
		f.SHA256 = sum
		if listed == nil {
			continue
		}
		want, ok := listed[f.Name]
		if !ok {
			return nil, fmt.Sprintf("%s is not listed in SHA256SUMS", f.Name)
		}
		if want != sum {
			return nil, fmt.Sprintf("%s has SHA-256 %s but SHA256SUMS says %s: the bundle is damaged", f.Name, sum, want)
		}
		if f.Pkg == b.engine.Pkg {
			b.engine.SHA256 = sum
		}
	}
	if listed != nil {
		names := make([]string, 0, len(listed))
		for name := range listed {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if strings.HasSuffix(name, ".deb") && !slices.ContainsFunc(b.files, func(f debFile) bool { return f.Name == name }) {
				return nil, fmt.Sprintf("SHA256SUMS lists %s, which is missing from %s", name, dir)
			}
		}
	}
	return b, ""
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// installOffline uploads the bundle's .deb files that the host lacks to a staging
// directory in the login user's home, checks them by SHA-256 on the host, and
// installs them with apt pointed at an empty package list directory: apt sees no
// repository at all, so nothing is downloaded and no network is needed.
func (d *Docker) installOffline(ctx context.Context, a apt, b *offlineBundle, fixBroken bool) error {
	op := a.op
	// Packages already installed are left alone (apt would refuse to downgrade
	// them); the engine packages are always part of the install.
	names := make([]string, 0, len(b.files))
	for _, f := range b.files {
		names = append(names, f.Pkg)
	}
	have, err := a.installed(ctx, names)
	if err != nil {
		return err
	}
	engine := b.enginePackages()
	var files []debFile
	for _, f := range b.files {
		if slices.Contains(engine, f.Pkg) || !have[f.Pkg].installed() {
			files = append(files, f)
		}
	}

	op.acting("upload")
	stage, err := uploadBundle(ctx, op, files)
	if err != nil {
		return err
	}

	op.acting("install")
	argv := aptBase("install")
	if fixBroken {
		// With the bundle's files named, apt can resolve what an interrupted run
		// left half done (all of it is in the bundle; nothing can be downloaded).
		argv = append(argv, "--fix-broken")
	}
	argv = append(argv, "-o", "Dir::State::Lists="+stage+"/lists")
	for _, f := range files {
		argv = append(argv, stage+"/"+f.Name)
	}
	r, err := op.run(ctx, "apt-get install", remote.Cmd{Argv: argv, Env: aptEnv})
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return a.failed("apt-get install of the offline bundle", r)
	}
	// The staging copy is not needed any more; a failure to remove it is harmless.
	_, _ = op.run(ctx, "cleanup", remote.Cmd{Argv: []string{"rm", "-rf", "--", stage}})
	return nil
}

// uploadBundle sends files to the staging directory as the login user (whose
// directory it is, also on sudo hosts), skipping those whose copy on the host
// already has the right checksum, then verifies every file's checksum on the host.
// It returns the staging directory's absolute path.
func uploadBundle(ctx context.Context, op *hostOp, files []debFile) (string, error) {
	login := op.host
	login.Sudo = false
	stage, err := op.rem.mkdirAll(ctx, login, offlineStaging, 0o700)
	if err != nil {
		return "", err
	}
	if _, err := op.rem.mkdirAll(ctx, login, path.Join(stage, "lists", "partial"), 0o755); err != nil {
		return "", err
	}
	onHost, err := remoteSums(ctx, op, stage, files)
	if err != nil {
		return "", err
	}
	var send []debFile
	var total int64
	for _, f := range files {
		if onHost[f.Name] != f.SHA256 {
			send = append(send, f)
			total += f.Size
		}
	}
	sent, stop := op.sending(total)
	defer stop()
	for _, f := range send {
		_, err := op.rem.writeFile(ctx, login, path.Join(stage, f.Name), remote.Content{Path: f.Path}, remote.Attrs{Mode: 0o644}, sent)
		if err != nil {
			return "", err
		}
	}

	// Verify all of them: also those skipped, since apt installs what is there now.
	onHost, err = remoteSums(ctx, op, stage, files)
	if err != nil {
		return "", err
	}
	for _, f := range files {
		if onHost[f.Name] != f.SHA256 {
			return "", checksumMismatch(op.host, "after uploading %s to %s the host's copy has SHA-256 %q, not %s", f.Name, stage, onHost[f.Name], f.SHA256)
		}
	}
	return stage, nil
}

// remoteSums returns the SHA-256 of the named files in dir on the host; files that
// are missing are left out.
func remoteSums(ctx context.Context, op *hostOp, dir string, files []debFile) (map[string]string, error) {
	argv := []string{"sha256sum", "--"}
	for _, f := range files {
		argv = append(argv, f.Name)
	}
	// As the login user: the staging directory is theirs.
	r, err := op.runAs(ctx, "verify", remote.Cmd{Argv: argv, Dir: dir}, false)
	if err != nil {
		return nil, err
	}
	sums := map[string]string{}
	for line := range strings.Lines(r.Stdout) {
		sum, name, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && len(sum) == 64 {
			sums[strings.TrimPrefix(strings.TrimSpace(name), "*")] = sum
		}
	}
	return sums, nil
}
