package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// This file makes a file on a host hold given content, mode and owner, the one
// way every activity that writes a host's file does it (UploadFile, the ~/.ssh
// files, Consul's binary and configuration): look first, send only what differs,
// write atomically, checked by checksum in the same pass (see remote.FS.WriteFile).

// hostFile is what a host has at a path, as file-state.sh reports it.
type hostFile struct {
	kind       string // "file", "absent"; ~/.ssh files also "symlink", "other"
	sha256     string
	mode       uint32
	user, uid  string
	group, gid string
}

// wantFile is what a host's file must be.
type wantFile struct {
	path  string
	src   remote.Content
	size  int64
	sum   string // SHA-256 of the content, hex; empty for a worker file not hashed yet
	attrs remote.Attrs
	// secret: the content holds a secret; messages leave out even its checksum.
	secret bool
}

// wantData is a wantFile of content in memory.
func wantData(p string, data []byte, a remote.Attrs) wantFile {
	sum := sha256.Sum256(data)
	return wantFile{path: p, src: remote.Content{Data: data}, size: int64(len(data)), sum: hex.EncodeToString(sum[:]), attrs: a}
}

// ensureFile makes the host's file hold w: when its content is there already,
// only mode and ownership are fixed; otherwise the content is written (see
// writeChecked). Phases ("check", "upload") go to phase; the bytes sent count into
// sent (may be nil). It reports whether anything changed, and whether the content
// was written.
func ensureFile(ctx context.Context, rem typedRemote, h remote.Host, w wantFile, phase func(string), sent *atomic.Int64) (changed, written bool, err error) {
	changed, written, _, err = ensureContent(ctx, rem, h, w, phase, sent)
	return changed, written, err
}

// ensureContent is ensureFile also for a worker file whose checksum is not known
// yet (w.sum empty): it is hashed first only when the host has a file of the same
// size to compare with, and otherwise while it is sent, so that it is read once.
// It returns the content's checksum.
func ensureContent(ctx context.Context, rem typedRemote, h remote.Host, w wantFile, phase func(string), sent *atomic.Int64) (changed, written bool, sum string, err error) {
	phase("check")
	st, err := fileState(ctx, rem, h, w.path, w.size)
	if err != nil {
		return false, false, "", err
	}
	if st.kind == "file" && st.sha256 != "" {
		if w.sum == "" {
			if w.sum, err = hashContent(w.src); err != nil {
				return false, false, "", err
			}
		}
		if st.sha256 == w.sum {
			changed, err := fixAttrs(ctx, rem, h, w.path, st, w.attrs)
			return changed, false, w.sum, err
		}
	}
	sum, err = writeContent(ctx, rem, h, w, phase, sent)
	return true, true, sum, err
}

// hashContent reads a worker file (or data) once for its SHA-256.
func hashContent(c remote.Content) (string, error) {
	r, err := c.Open()
	if err != nil {
		return "", workerFilesFailed("opening "+c.Path, err)
	}
	defer r.Close()
	hash := sha256.New()
	if _, err := io.Copy(hash, r); err != nil {
		return "", workerFilesFailed("reading "+c.Path, err)
	}
	return hex.EncodeToString(hash.Sum(nil)), nil
}

// writeChecked writes w's content (remote.FS.WriteFile: a temporary file, checked
// by checksum as it is written, renamed over the old one).
func writeChecked(ctx context.Context, rem typedRemote, h remote.Host, w wantFile, phase func(string), sent *atomic.Int64) error {
	_, err := writeContent(ctx, rem, h, w, phase, sent)
	return err
}

func writeContent(ctx context.Context, rem typedRemote, h remote.Host, w wantFile, phase func(string), sent *atomic.Int64) (string, error) {
	phase("upload")
	src := w.src
	src.SHA256 = w.sum
	return rem.writeFile(ctx, h, w.path, src, w.attrs, sent)
}

// fileState reads what the host has at p (with the host's sudo setting).
// A file of another size than size (when not negative) is not hashed: its
// sha256 is empty.
func fileState(ctx context.Context, rem typedRemote, h remote.Host, p string, size int64) (hostFile, error) {
	c := fileStateScript.cmd(p, strconv.FormatInt(size, 10))
	c.Sudo = h.Sudo
	r, err := rem.run(ctx, h, c)
	if err != nil {
		return hostFile{}, err
	}
	if r.ExitCode != 0 {
		return hostFile{}, remoteFailed(h, "cannot read %s (exit %d): %s", p, r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	switch lines[0] {
	case "dir":
		return hostFile{}, hostInvalid(h, "%s is a directory on the host; give the full path of the file", p)
	case "nodir":
		return hostFile{}, remoteFailed(h, "directory %s does not exist on the host; create it in an earlier step", path.Dir(p))
	case "absent":
		return hostFile{kind: "absent"}, nil
	}
	if lines[0] != "file" || len(lines) != 3 {
		return hostFile{}, remoteFailed(h, "unexpected output while checking %s: %q", p, r.Stdout)
	}
	sum, _, _ := strings.Cut(lines[1], " ")
	if sum == "-" {
		sum = ""
	} else if len(sum) != 64 {
		return hostFile{}, remoteFailed(h, "unexpected output while checking %s: %q", p, r.Stdout)
	}
	st, err := parseAttrs(lines[2])
	if err != nil || st.kind != "file" {
		return hostFile{}, remoteFailed(h, "unexpected output while checking %s: %q", p, r.Stdout)
	}
	st.sha256 = sum
	return st, nil
}

// parseAttrs reads "absent", "other", "symlink", or stat's "MODE USER GROUP UID GID"
// (a file).
func parseAttrs(s string) (hostFile, error) {
	switch s {
	case "absent", "other", "symlink":
		return hostFile{kind: s}, nil
	}
	f := strings.Fields(s)
	if len(f) != 5 {
		return hostFile{}, fmt.Errorf("bad attributes %q", s)
	}
	mode, err := strconv.ParseUint(f[0], 8, 32)
	if err != nil {
		return hostFile{}, err
	}
	return hostFile{kind: "file", mode: uint32(mode), user: f[1], group: f[2], uid: f[3], gid: f[4]}, nil
}

// fixAttrs sets mode and ownership of an existing file whose content is right. chown
// goes first: it clears setuid/setgid bits, which chmod then sets.
func fixAttrs(ctx context.Context, rem typedRemote, h remote.Host, p string, st hostFile, a remote.Attrs) (bool, error) {
	changed := false
	wantOwner := a.Owner != "" && a.Owner != st.user && a.Owner != st.uid
	wantGroup := a.Group != "" && a.Group != st.group && a.Group != st.gid
	if wantOwner || wantGroup {
		if err := hostStep(ctx, rem, h, "chown", remote.ChownArgv(a.Owner, a.Group, p)); err != nil {
			return false, err
		}
		changed = true
	}
	if st.mode != a.Mode || changed {
		if err := hostStep(ctx, rem, h, "chmod", []string{"chmod", fmt.Sprintf("%04o", a.Mode), "--", p}); err != nil {
			return changed, err
		}
		changed = changed || st.mode != a.Mode
	}
	return changed, nil
}

// hostStep runs a helper command with the host's sudo setting; a non-zero exit is
// an ErrRemoteFailed naming what.
func hostStep(ctx context.Context, rem typedRemote, h remote.Host, what string, argv []string) error {
	r, err := rem.run(ctx, h, remote.Cmd{Argv: argv, Sudo: h.Sudo})
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return remoteFailed(h, "%s failed (exit %d): %s", what, r.ExitCode, strings.TrimSpace(r.Stderr+" "+r.Stdout))
	}
	return nil
}
