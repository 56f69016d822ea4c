package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/sshtest"
)

// The loopback hosts are this machine: the tests check written files locally.

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// noTempLeft fails when an upload left a temporary file in dir.
func noTempLeft(t *testing.T, dir string) {
	t.Helper()
	if left := tempLeft(dir); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// tempLeft lists temporary upload files in dir.
func tempLeft(dir string) []string {
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "clusterflow-tmp") {
			left = append(left, e.Name())
		}
	}
	return left
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteFileChecksAsItWrites(t *testing.T) {
	s := sshtest.New(t, 1)
	pool := sshtest.Pool(t, remote.PoolOptions{}, nil)
	h := s.Host(0)
	ctx := context.Background()
	dir := t.TempDir()
	dest := filepath.Join(dir, "data.bin")
	data := randomBytes(t, 3<<20+17)
	src := filepath.Join(t.TempDir(), "src.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}

	// Checksum unknown: hashed while sent, renamed by the worker after comparing.
	var sent atomic.Int64
	sum, err := pool.WriteFile(ctx, h, dest, remote.Content{Path: src}, remote.Attrs{Mode: 0o640}, &sent)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dest)
	if sum != hexSum(data) || !bytes.Equal(got, data) || sent.Load() != int64(len(data)) {
		t.Fatalf("sum %s (want %s), %d bytes written, %d sent", sum, hexSum(data), len(got), sent.Load())
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}

	// Checksum known: the host checks and renames in the same command.
	data2 := []byte("small and known\n")
	sum, err = pool.WriteFile(ctx, h, dest, remote.Content{Data: data2, SHA256: hexSum(data2)}, remote.Attrs{Mode: 0o600}, nil)
	if err != nil || sum != hexSum(data2) {
		t.Fatalf("known checksum: %s, %v", sum, err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data2) {
		t.Fatalf("content %q", got)
	}

	// A wrong checksum (the source changed after it was hashed) replaces nothing.
	_, err = pool.WriteFile(ctx, h, dest, remote.Content{Data: []byte("other"), SHA256: hexSum(data2)}, remote.Attrs{Mode: 0o600}, nil)
	if k, _ := remote.KindOf(err); k != remote.Mismatch || strings.Contains(err.Error(), hexSum(data2)) {
		t.Fatalf("wrong checksum: %v (kind %v; the message must not show checksums)", err, k)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data2) {
		t.Fatalf("content after a mismatch %q", got)
	}

	// An empty file works too.
	if sum, err = pool.WriteFile(ctx, h, dest, remote.Content{Data: []byte{}}, remote.Attrs{Mode: 0o644}, nil); err != nil || sum != hexSum(nil) {
		t.Fatalf("empty: %s, %v", sum, err)
	}
	noTempLeft(t, dir)
}

func TestWriteFileRefusals(t *testing.T) {
	s := sshtest.New(t, 1)
	pool := sshtest.Pool(t, remote.PoolOptions{}, nil)
	h := s.Host(0)
	ctx := context.Background()
	_, err := pool.WriteFile(ctx, h, "/nonexistent-dir-clusterflow/f", remote.Content{Data: []byte("x")}, remote.Attrs{Mode: 0o644}, nil)
	if k, _ := remote.KindOf(err); k != remote.Refused || !strings.Contains(err.Error(), "cannot create") {
		t.Fatalf("missing directory: %v (kind %v)", err, k)
	}
	_, err = pool.WriteFile(ctx, h, filepath.Join(t.TempDir(), "f"), remote.Content{Data: []byte("x")}, remote.Attrs{Mode: 0o644, Owner: "no-such-user-clusterflow"}, nil)
	if k, _ := remote.KindOf(err); k != remote.Refused || !strings.Contains(err.Error(), "chown") {
		t.Fatalf("unknown owner: %v (kind %v)", err, k)
	}
	_, err = pool.WriteFile(ctx, h, filepath.Join(t.TempDir(), "f"), remote.Content{Path: filepath.Join(t.TempDir(), "missing")}, remote.Attrs{Mode: 0o644}, nil)
	if k, _ := remote.KindOf(err); k != remote.Invalid {
		t.Fatalf("missing source: %v (kind %v)", err, k)
	}
}

// TestReceiveScriptWithoutOpenSSL runs receive.sh here, on a PATH without openssl:
// it hashes with sha256sum instead.
func TestReceiveScriptWithoutOpenSSL(t *testing.T) {
	bin := t.TempDir()
	for _, tool := range []string{"sh", "tee", "stat", "sed", "sha256sum", "chmod", "mv", "rm", "sync", "cat"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skip(tool, "missing")
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	dest, tmp := filepath.Join(dir, "f"), filepath.Join(dir, ".f.clusterflow-tmp-x")
	data := []byte("hashed by coreutils\n")
	run := func(size, want string) (string, error) {
		cmd := exec.Command(filepath.Join(bin, "sh"), "receive.sh", dest, tmp, size, want, "0644", "", "")
		cmd.Env = []string{"PATH=" + bin}
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("20", hexSum(data))
	if err != nil || !strings.Contains(out, "sha256 "+hexSum(data)) || !strings.Contains(out, "renamed") {
		t.Fatalf("receive.sh: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatalf("dest %q", got)
	}
	// Fewer bytes than announced: nothing renamed, nothing left.
	if out, err := run("21", "-"); err == nil || !strings.Contains(out, "received 20 of 21 bytes") {
		t.Fatalf("short input: %v\n%s", err, out)
	}
	noTempLeft(t, dir)
}

func TestWriteFileCancelledLeavesOldFile(t *testing.T) {
	s := sshtest.New(t, 1)
	pool := sshtest.Pool(t, remote.PoolOptions{}, nil)
	h := s.Host(0)
	dir := t.TempDir()
	dest := filepath.Join(dir, "f")
	if err := os.WriteFile(dest, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A FIFO as the source: the test controls when data flows and stops.
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := exec.Command("mkfifo", fifo).Run(); err != nil {
		t.Skip("mkfifo:", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var sent atomic.Int64
	go func() {
		_, err := pool.WriteFile(ctx, h, dest, remote.Content{Path: fifo}, remote.Attrs{Mode: 0o644}, &sent)
		done <- err
	}()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(randomBytes(t, 1<<20)); err != nil {
		t.Fatal(err)
	}
	for sent.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("cancelled write: %v", err)
	}
	if got, _ := os.ReadFile(dest); string(got) != "old\n" {
		t.Fatalf("dest after a cancelled write: %d bytes", len(got))
	}
	// receive.sh removes its file once its input ends short.
	deadline := time.Now().Add(10 * time.Second)
	for len(tempLeft(dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	noTempLeft(t, dir)
}
