package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestConsulVersionMatchesModule keeps consulVersion in step with the consul that
// lab/consul/go.mod requires.
func TestConsulVersionMatchesModule(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("consul", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^require github\.com/hashicorp/consul v(\S+)$`).FindSubmatch(b)
	if m == nil || string(m[1]) != consulVersion {
		t.Fatalf("lab/consul/go.mod requires consul %q; consulVersion is %q", m, consulVersion)
	}
}

// TestInstallConsul puts a fake cached binary into a state directory: linked, with
// its SHA256SUMS, and left alone the second time.
func TestInstallConsul(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("CLUSTERFLOW_CACHE_DIR", cache)
	p := paths{Dir: filepath.Join(t.TempDir(), "lab")}
	if got, err := installConsul(p); err != nil || got != "" {
		t.Fatalf("empty cache: %q %v", got, err)
	}
	bin, _, err := consulCache()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho Consul v"+consulVersion+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := installConsul(p)
	if err != nil || got != filepath.Join(p.Dir, "consul") {
		t.Fatalf("install: %q %v", got, err)
	}
	sums, _ := os.ReadFile(filepath.Join(p.Dir, consulSums))
	sum, _ := fileSHA256(bin)
	if string(sums) != sum+"  consul\n" {
		t.Errorf("sums %q", sums)
	}
	a, _ := os.Stat(bin)
	b, _ := os.Stat(got)
	if !os.SameFile(a, b) {
		t.Errorf("not a hard link")
	}
	if _, err := installConsul(p); err != nil {
		t.Fatal(err)
	}
	if c, _ := os.Stat(got); !os.SameFile(b, c) {
		t.Errorf("second install replaced the file")
	}
}
