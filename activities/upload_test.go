package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/sshtest"
)

// The loopback hosts are this machine, so the tests check uploaded files locally.

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func statOf(t *testing.T, path string) (os.FileMode, int, int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode(), int(st.Uid), int(st.Gid)
}

// noTempFiles fails if an upload left a temporary file next to dest.
func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "clusterflow-tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestUploadFileThenSkipWhenEqual(t *testing.T) {
	s := sshtest.New(t, 1)
	files := NewFiles(sshtest.Pool(t, remote.PoolOptions{}, nil))
	ctx := context.Background()
	local, hostDir := t.TempDir(), t.TempDir()
	content := bytes.Repeat([]byte("clusterflow upload\n"), 50000) // ~1 MB: several SFTP packets
	src := writeFile(t, filepath.Join(local, "motd"), content)
	dest := filepath.Join(hostDir, "motd")
	req := UploadRequest{Host: s.Host(0), Src: src, Dest: dest, Mode: 0o640}

	res, err := files.UploadFile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.SHA256 != sum(content) || res.Bytes != int64(len(content)) {
		t.Fatalf("first upload: %+v", res)
	}
	got, _ := os.ReadFile(dest)
	if !bytes.Equal(got, content) {
		t.Fatal("uploaded content differs")
	}
	if mode, _, _ := statOf(t, dest); mode.Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", mode.Perm())
	}
	noTempFiles(t, hostDir)

	// Same content: nothing sent, nothing changed.
	before, _ := os.Stat(dest)
	res, err = files.UploadFile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || res.SHA256 != sum(content) {
		t.Fatalf("second upload: %+v", res)
	}
	after, _ := os.Stat(dest)
	if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("file was rewritten although the content was equal")
	}

	// New content replaces the file (by rename: a new inode).
	content2 := []byte("second version\n")
	writeFile(t, src, content2)
	res, err = files.UploadFile(ctx, req)
	if err != nil || !res.Changed || res.SHA256 != sum(content2) {
		t.Fatalf("third upload: %+v, %v", res, err)
	}
	got, _ = os.ReadFile(dest)
	if !bytes.Equal(got, content2) {
		t.Fatalf("content after replace: %q", got)
	}
	noTempFiles(t, hostDir)
}

func TestUploadFileFixesModeAndOwnerOnly(t *testing.T) {
	s := sshtest.New(t, 1)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	grp, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		t.Skip("no group for nobody")
	}
	files := NewFiles(sshtest.Pool(t, remote.PoolOptions{}, nil))
	ctx := context.Background()
	content := []byte("same content\n")
	src := writeFile(t, filepath.Join(t.TempDir(), "f"), content)
	hostDir := t.TempDir()
	dest := writeFile(t, filepath.Join(hostDir, "f"), content)
	if err := os.Chmod(dest, 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(dest)

	// The setuid bit also checks that chmod comes after chown (which clears it).
	req := UploadRequest{Host: s.Host(0), Src: src, Dest: dest, Mode: 0o4755, Owner: nobody.Username, Group: grp.Name}
	res, err := files.UploadFile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed {
		t.Fatal("mode and owner differ, want Changed")
	}
	mode, uid, gid := statOf(t, dest)
	if mode.Perm() != 0o755 || mode&os.ModeSetuid == 0 || strconv.Itoa(uid) != nobody.Uid || strconv.Itoa(gid) != nobody.Gid {
		t.Fatalf("after fix: mode %v uid %d gid %d", mode, uid, gid)
	}
	after, _ := os.Stat(dest)
	if !os.SameFile(before, after) {
		t.Fatal("content was rewritten; only attributes should change")
	}

	// Now everything matches, also when owner and group are given as numbers.
	req.Owner, req.Group = nobody.Uid, nobody.Gid
	res, err = files.UploadFile(ctx, req)
	if err != nil || res.Changed {
		t.Fatalf("second call: %+v, %v", res, err)
	}
}

func TestUploadFileTemplate(t *testing.T) {
	s := sshtest.New(t, 1)
	files := NewFiles(sshtest.Pool(t, remote.PoolOptions{}, nil))
	ctx := context.Background()
	local, hostDir := t.TempDir(), t.TempDir()
	src := writeFile(t, filepath.Join(local, "hosts.tmpl"),
		[]byte("name={{ .Host.Name }} addr={{ .Host.Address }} groups={{ range .Host.Groups }}{{ . }};{{ end }} greeting={{ .Vars.greeting }}\n"))
	h := s.Host(0)
	h.Groups = []string{"managers", "lab"}
	dest := filepath.Join(hostDir, "hosts")

	res, err := files.UploadFile(ctx, UploadRequest{Host: h, Src: src, Template: true, Vars: map[string]string{"greeting": "hi 'there'"}, Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	want := "name=host0 addr=127.0.0.2 groups=managers;lab; greeting=hi 'there'\n"
	got, _ := os.ReadFile(dest)
	if string(got) != want || res.SHA256 != sum([]byte(want)) || !res.Changed {
		t.Fatalf("rendered %q (result %+v), want %q", got, res, want)
	}
	if mode, _, _ := statOf(t, dest); mode.Perm() != 0o644 {
		t.Errorf("default mode %v, want 0644", mode.Perm())
	}

	// A missing variable, a broken template and a missing file are input errors.
	_, err = files.UploadFile(ctx, UploadRequest{Host: h, Src: src, Template: true, Dest: dest})
	msg := requireAppErr(t, err, ErrInvalidInput, false).Message()
	if !strings.Contains(msg, "greeting") {
		t.Errorf("missing var message: %s", msg)
	}
	bad := writeFile(t, filepath.Join(local, "bad.tmpl"), []byte("{{ .Host.Name "))
	_, err = files.UploadFile(ctx, UploadRequest{Host: h, Src: bad, Template: true, Dest: dest})
	requireAppErr(t, err, ErrInvalidInput, false)
	_, err = files.UploadFile(ctx, UploadRequest{Host: h, Src: filepath.Join(local, "missing"), Dest: dest})
	msg = requireAppErr(t, err, ErrInvalidInput, false).Message()
	if !strings.Contains(msg, "does not exist on this worker") {
		t.Errorf("missing src message: %s", msg)
	}
	// Templates without bounds are refused before they run, quickly: an integer range
	// that loops without writing, and one that writes past the output budget.
	for text, want := range map[string]string{
		"{{range 100000000000}}{{end}}": "does too much work",
		// 1 GB of output: the output budget (64 MiB) or, under -race on a busy
		// machine, the time budget (2 s) stops it first.
		`{{range 1000000}}{{printf "%01000d" 0}}{{end}}`:            "template exceeds its budget",
		`{{define "a"}}{{template "a" .}}{{end}}{{template "a" .}}`: "calls itself",
	} {
		loop := writeFile(t, filepath.Join(local, "loop.tmpl"), []byte(text))
		start := time.Now()
		_, err = files.UploadFile(ctx, UploadRequest{Host: h, Src: loop, Template: true, Dest: dest})
		msg = requireAppErr(t, err, ErrInvalidInput, false).Message()
		if !strings.Contains(msg, want) || time.Since(start) > 10*time.Second {
			t.Errorf("%s: %s after %s", text, msg, time.Since(start))
		}
	}
	// The failed calls left the good file alone.
	if got, _ := os.ReadFile(dest); string(got) != want {
		t.Fatalf("dest changed by failed uploads: %q", got)
	}
}

func TestUploadFileRemoteErrors(t *testing.T) {
	s := sshtest.New(t, 1)
	files := NewFiles(sshtest.Pool(t, remote.PoolOptions{}, nil))
	ctx := context.Background()
	src := writeFile(t, filepath.Join(t.TempDir(), "f"), []byte("x"))
	hostDir := t.TempDir()

	_, err := files.UploadFile(ctx, UploadRequest{Host: s.Host(0), Src: src, Dest: filepath.Join(hostDir, "no", "such", "dir", "f")})
	msg := requireAppErr(t, err, ErrRemoteFailed, false).Message()
	if !strings.Contains(msg, "does not exist on the host") {
		t.Errorf("message: %s", msg)
	}
	_, err = files.UploadFile(ctx, UploadRequest{Host: s.Host(0), Src: src, Dest: hostDir})
	requireAppErr(t, err, ErrInvalidInput, false)
	_, err = files.UploadFile(ctx, UploadRequest{Host: s.Host(0), Src: src, Dest: "relative/path"})
	requireAppErr(t, err, ErrInvalidInput, false)
	_, err = files.UploadFile(ctx, UploadRequest{Host: s.Host(0), Src: src, Dest: filepath.Join(hostDir, "f"), Owner: "no-such-user-clusterflow"})
	requireAppErr(t, err, ErrRemoteFailed, false)
	noTempFiles(t, hostDir)
}

// TestUploadFileSudo uses the sudo path (temporary file in /tmp, then sudo install
// and mv). Logged in as root, sudo -n needs no password.
func TestUploadFileSudo(t *testing.T) {
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Skip("sudo is not installed (apt-get install sudo)")
	}
	s := sshtest.New(t, 1)
	files := NewFiles(sshtest.Pool(t, remote.PoolOptions{}, nil))
	h := s.Host(0)
	h.Sudo = true
	content := []byte("via sudo\n")
	src := writeFile(t, filepath.Join(t.TempDir(), "f"), content)
	hostDir := t.TempDir()
	dest := filepath.Join(hostDir, "f")

	res, err := files.UploadFile(context.Background(), UploadRequest{Host: h, Src: src, Dest: dest, Mode: 0o600, Owner: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dest)
	mode, uid, _ := statOf(t, dest)
	nobody, _ := user.Lookup("nobody")
	if !res.Changed || !bytes.Equal(got, content) || mode.Perm() != 0o600 || strconv.Itoa(uid) != nobody.Uid {
		t.Fatalf("result %+v, content %q, mode %v, uid %d", res, got, mode, uid)
	}
	noTempFiles(t, hostDir)
	if left, _ := filepath.Glob("/tmp/.clusterflow-upload-*"); len(left) > 0 {
		t.Errorf("temporary files left in /tmp: %v", left)
	}
	res, err = files.UploadFile(context.Background(), UploadRequest{Host: h, Src: src, Dest: dest, Mode: 0o600, Owner: "nobody"})
	if err != nil || res.Changed {
		t.Fatalf("second upload: %+v, %v", res, err)
	}

	// The same command through sudo.
	out, err := NewSSH(sshtest.Pool(t, remote.PoolOptions{}, nil)).RunRemoteCommand(context.Background(), CommandRequest{Host: h, Command: []string{"id", "-u"}, Env: map[string]string{"X": "1"}})
	if err != nil || strings.TrimSpace(out.Stdout) != "0" {
		t.Fatalf("id -u via sudo: %+v, %v", out, err)
	}
}

// TestUploadFileHeartbeats checks that an upload in an activity context reports
// its progress.
func TestUploadFileHeartbeats(t *testing.T) {
	s := sshtest.New(t, 1)
	files := NewFiles(sshtest.Pool(t, remote.PoolOptions{}, nil))
	files.heartbeatEvery = 10 * time.Millisecond
	env, _ := activityEnv(t, files)
	got := make(chan UploadProgress, 100)
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p UploadProgress
		if details.Get(&p) == nil {
			select {
			case got <- p:
			default:
			}
		}
	})
	content := bytes.Repeat([]byte{'z'}, 8<<20)
	src := writeFile(t, filepath.Join(t.TempDir(), "big"), content)
	val, err := env.ExecuteActivity(files.UploadFile, UploadRequest{Host: s.Host(0), Src: src, Dest: filepath.Join(t.TempDir(), "big")})
	if err != nil {
		t.Fatal(err)
	}
	var res UploadResult
	if err := val.Get(&res); err != nil || !res.Changed || res.Bytes != int64(len(content)) {
		t.Fatalf("result %+v, %v", res, err)
	}
	select {
	case p := <-got:
		if p.BytesTotal != int64(len(content)) || p.Phase == "" {
			t.Fatalf("heartbeat %+v", p)
		}
	default:
		t.Fatal("no heartbeat recorded")
	}
}
