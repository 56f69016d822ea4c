package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The lab's consul binary. Debian has no consul package and the lab has no internet,
// so `lab consul` builds one from the Go module proxy with the throwaway module in
// lab/consul and keeps it in the cache directory, which outlives fresh clones of the
// repository (CI checks out anew for every run; a cold build costs ~20 min on 2
// cores, a warm Go build cache ~5 min). `lab up` then puts the cached binary at a
// stable path in the lab state directory, which playbooks name:
//
//	binary: ../.clusterflow/lab/consul
//	sha256sums: ../.clusterflow/lab/consul.SHA256SUMS
const (
	// consulVersion is the consul that lab/consul/go.mod requires (a unit test keeps
	// the two in step).
	consulVersion = "1.22.7"
	// consulModuleDir is the build module, relative to the repository root.
	consulModuleDir = "lab/consul"
	// consulPackage is the main package built.
	consulPackage = "github.com/hashicorp/consul"
	// consulSums is the name of the SHA256SUMS file beside the state copy.
	consulSums = "consul.SHA256SUMS"
)

// consulCache returns the cached binary's path and its SHA256SUMS file:
// CACHE/consul/VERSION/{consul,SHA256SUMS}. The binary is named consul, as in
// HashiCorp's release zips, so the sums file lists it under that name.
func consulCache() (bin, sums string, err error) {
	dir, err := cacheDir()
	if err != nil {
		return "", "", err
	}
	d := filepath.Join(dir, "consul", consulVersion)
	return filepath.Join(d, "consul"), filepath.Join(d, "SHA256SUMS"), nil
}

// ensureConsul returns the cached consul binary, building it first when the cache
// has none. Progress goes to log. The SHA256SUMS file beside it is (re)written
// whenever it does not match the binary.
func ensureConsul(ctx context.Context, log io.Writer) (string, error) {
	bin, sums, err := consulCache()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); errors.Is(err, fs.ErrNotExist) {
		if err := buildConsul(ctx, bin, log); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	sum, err := fileSHA256(bin)
	if err != nil {
		return "", err
	}
	line := []byte(sum + "  consul\n")
	if have, err := os.ReadFile(sums); err != nil || !bytes.Equal(have, line) {
		if err := writeFileAtomic(sums, line, 0o644); err != nil {
			return "", fmt.Errorf("write %s: %w", sums, err)
		}
	}
	return bin, nil
}

// buildConsul builds consul from lab/consul into bin: statically linked (as
// HashiCorp's releases are, so any node's libc does), stripped, without VCS stamps.
// It builds into a temporary file next to bin and renames it when `consul version`
// names the expected version, so an interrupted build leaves nothing behind.
func buildConsul(ctx context.Context, bin string, log io.Writer) error {
	mod, err := filepath.Abs(consulModuleDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(mod, "go.mod")); err != nil {
		return fmt.Errorf("no %s/go.mod here: run lab from the repository root (%w)", consulModuleDir, err)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	defer os.Remove(tmp)
	fmt.Fprintf(log, "consul %s: not in the cache; building it from %s (a cold build takes ~20 min on 2 cores)\n", consulVersion, consulModuleDir)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w", "-o", tmp, consulPackage)
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building consul in %s: %w", consulModuleDir, err)
	}
	out, err := exec.CommandContext(ctx, tmp, "version").Output()
	if err != nil {
		return fmt.Errorf("the built consul does not run: %w", err)
	}
	if first, _, _ := strings.Cut(string(out), "\n"); strings.TrimSpace(first) != "Consul v"+consulVersion {
		return fmt.Errorf("the built consul says %q, want Consul v%s: is %s/go.mod in step with consulVersion?", first, consulVersion, consulModuleDir)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return err
	}
	fmt.Fprintf(log, "consul %s: built in %s: %s\n", consulVersion, time.Since(start).Round(time.Second), bin)
	return nil
}

// installConsul puts the cached consul binary at DIR/consul in the lab state
// directory, with DIR/consul.SHA256SUMS beside it: a hard link when the two are on
// one file system, else a copy. It returns the path, or "" when the cache has no
// binary (then `lab consul` builds one). An up to date copy is left alone.
func installConsul(p paths) (string, error) {
	bin, _, err := consulCache()
	if err != nil {
		return "", err
	}
	src, err := os.Stat(bin)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	dst := filepath.Join(p.Dir, "consul")
	sum, err := fileSHA256(bin)
	if err != nil {
		return "", err
	}
	if have, err := os.Stat(dst); err != nil || !os.SameFile(src, have) {
		if haveSum, err := fileSHA256(dst); err != nil || haveSum != sum {
			if err := linkOrCopy(bin, dst); err != nil {
				return "", fmt.Errorf("put consul in the lab state: %w", err)
			}
		}
	}
	line := []byte(sum + "  consul\n")
	sums := filepath.Join(p.Dir, consulSums)
	if have, err := os.ReadFile(sums); err != nil || !bytes.Equal(have, line) {
		if err := writeFileAtomic(sums, line, 0o644); err != nil {
			return "", err
		}
	}
	return dst, nil
}

// linkOrCopy replaces dst by a hard link to src, or by a copy (0755) when a link is
// not possible, atomically either way.
func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", dst, os.Getpid())
	os.Remove(tmp)
	defer os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
	return os.Rename(tmp, dst)
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
