package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRepoAddress keeps the repository's address in the lab subnet, away from the nodes
// and from the addresses the engine hands out.
func TestRepoAddress(t *testing.T) {
	for _, name := range []string{defaultLabName, "cf-other"} {
		s, _ := newLabSpec(name)
		a := s.RepoAddress()
		if !s.Subnet.Contains(a) || s.IPRange().Contains(a) {
			t.Errorf("%s must be in %s and outside %s", a, s.Subnet, s.IPRange())
		}
		if int(a.As4()[3]) >= firstHost || a == s.Gateway() {
			t.Errorf("%s collides with the gateway or a node", a)
		}
		want := fmt.Sprintf("URIs: http://%s:%d/\nSuites: ./\nTrusted: yes\n", a, repoPort)
		if src := s.nodeAptSources(); !strings.Contains(src, want) || strings.Contains(src, "debian.org") {
			t.Errorf("node sources:\n%s", src)
		}
	}
	if s, _ := newLabSpec(defaultLabName); s.RepoAddress() != netip.MustParseAddr("10.211.73.10") {
		t.Errorf("default lab's repository at %s", s.RepoAddress())
	}
}

// TestWriteRepoIndex builds two tiny packages with dpkg-deb and checks the flat
// repository index written for them.
func TestWriteRepoIndex(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("no dpkg-deb")
	}
	dir := t.TempDir()
	for _, name := range []string{"cf-alpha", "cf-beta"} {
		root := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755); err != nil {
			t.Fatal(err)
		}
		control := "Package: " + name + "\nVersion: 1.0-1\nArchitecture: all\nMaintainer: lab <lab@clusterflow.invalid>\nDescription: test package\n more text\n"
		if err := os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", root, filepath.Join(dir, name+"_1.0-1_all.deb")).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb --build: %v\n%s", err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a package"), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := writeRepoIndex(context.Background(), dir)
	if err != nil || n != 2 {
		t.Fatalf("writeRepoIndex: %d, %v", n, err)
	}
	packages, _ := os.ReadFile(filepath.Join(dir, "Packages"))
	stanzas := strings.Split(strings.TrimSpace(string(packages)), "\n\n")
	if len(stanzas) != 2 {
		t.Fatalf("%d stanzas:\n%s", len(stanzas), packages)
	}
	sums, _ := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	for i, name := range []string{"cf-alpha", "cf-beta"} {
		file := name + "_1.0-1_all.deb"
		sum, err := fileSHA256(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(dir, file))
		for _, want := range []string{"Package: " + name + "\n", "Version: 1.0-1\n", "Description: test package\n more text\n",
			"Filename: ./" + file + "\n", fmt.Sprintf("Size: %d\n", fi.Size()), "SHA256: " + sum} {
			if !strings.Contains(stanzas[i]+"\n", want) {
				t.Errorf("stanza %d lacks %q:\n%s", i, want, stanzas[i])
			}
		}
		if !strings.Contains(string(sums), sum+"  "+file+"\n") {
			t.Errorf("SHA256SUMS lacks %s:\n%s", file, sums)
		}
	}
	release, _ := os.ReadFile(filepath.Join(dir, "Release"))
	h := sha256.Sum256(packages)
	if want := fmt.Sprintf("SHA256:\n %s %d Packages\n", hex.EncodeToString(h[:]), len(packages)); !strings.Contains(string(release), want) {
		t.Errorf("Release lacks %q:\n%s", want, release)
	}
	// IMAGE is written by ensureRepoCache after the index: it marks the cache complete.
	if repoComplete(dir, "sha256:x") {
		t.Error("complete without IMAGE")
	}
	if err := os.WriteFile(filepath.Join(dir, "IMAGE"), []byte("sha256:x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if repoComplete(dir, "sha256:x") {
		t.Error("complete without PACKAGES (a cache from before the extra packages)")
	}
	if err := os.WriteFile(filepath.Join(dir, "PACKAGES"), []byte(repoPackageList()), 0o644); err != nil {
		t.Fatal(err)
	}
	if !repoComplete(dir, "sha256:x") || repoComplete(dir, "sha256:y") {
		t.Error("repoComplete does not follow IMAGE")
	}
}
