package playbooks

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeHome points ~ at a fresh directory, so that resolved paths are predictable.
func fakeHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	return home
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestLoadFull checks testdata/valid/full.yaml field by field after resolution:
// defaults per file, absolute paths, Via, host order and step host selection.
func TestLoadFull(t *testing.T) {
	home := fakeHome(t)
	dir := mustAbs(t, filepath.Join("testdata", "valid"))

	plan, err := Load(filepath.Join("testdata", "valid", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	worker1 := Host{
		Name: "worker1", Address: "192.0.2.11", Port: 2200, User: "root", UseAgent: true,
		Groups:         []string{"workers"},
		KnownHostsFile: filepath.Join(home, ".ssh", "known_hosts"), // the playbook's defaults do not apply
		HostKeyPolicy:  HostKeyTOFU,
	}
	worker2 := Host{
		Name: "worker2", Address: "worker2.lab.example", Port: 22, User: "root", UseAgent: true,
		IdentityFile:   filepath.Join(dir, "keys", "id_worker"),        // relative to inventory/
		KnownHostsFile: filepath.Join(dir, "inventory", "known_hosts"), // ditto
		Groups:         []string{"workers", "edge"},
		HostKeyPolicy:  HostKeyTOFU,
	}
	bastion := Host{
		Name: "bastion", Address: "bastion.example.com", Port: 2222, User: "admin",
		IdentityFile:   filepath.Join(dir, "keys", "id_ed25519"),
		KnownHostsFile: filepath.Join(home, ".ssh", "lab_known_hosts"),
		Groups:         []string{"edge"},
		HostKeyPolicy:  HostKeyTOFU,
		// defaults.jump names bastion itself: not applied to it.
	}
	master := Host{
		Name: "master", Address: "192.168.56.101", Port: 22, User: "admin", Sudo: true,
		IdentityFile:   filepath.Join(dir, "keys", "id_ed25519"),
		KnownHostsFile: filepath.Join(home, ".ssh", "lab_known_hosts"),
		Groups:         []string{"managers"},
		HostKeyPolicy:  HostKeyTOFU,
		Jump:           "bastion",
		Via:            &bastion,
	}
	v6 := Host{
		Name: "v6", Address: "fd00::10", Port: 22, User: "admin", UseAgent: true,
		IdentityFile:   filepath.Join(dir, "keys", "id_ed25519"),
		KnownHostsFile: filepath.Join(home, ".ssh", "lab_known_hosts"),
		HostKeyPolicy:  HostKeyTOFU,
		Jump:           "worker1",
		Via:            &worker1,
	}
	want := &Plan{
		Name:    "full",
		Cluster: "test-lab",
		Source:  filepath.Join("testdata", "valid", "full.yaml"),
		// Included files first, then the playbook's own hosts.
		Hosts: []Host{worker1, worker2, bastion, master, v6},
		Vars:  map[string]string{"domain": "lab.example", "greeting": "hi"},
		Steps: []Step{
			{
				Name: "facts", Kind: KindRun,
				Hosts:    []string{"worker1", "worker2", "bastion", "master", "v6"},
				Parallel: 10, MaxFailPercent: 0, Timeout: Duration(10 * time.Minute), Attempts: 3,
				Run: &RunStep{Command: []string{"uname", "-a"}, ExitCodes: []int{0}},
			},
			{
				Name: "install curl", Kind: KindRun,
				// [workers, master, worker1]: inventory order, worker1 once.
				Hosts:    []string{"worker1", "worker2", "master"},
				Parallel: 2, MaxFailPercent: 50, Timeout: Duration(90 * time.Second), Attempts: 1,
				Run: &RunStep{
					Command:   []string{"apt-get", "install", "-y", "curl"},
					Creates:   "/usr/bin/curl",
					Unless:    []string{"test", "-x", "/usr/bin/curl"},
					Env:       map[string]string{"DEBIAN_FRONTEND": "noninteractive"},
					Dir:       "/tmp",
					ExitCodes: []int{0, 100},
				},
			},
			{
				Name: "motd", Kind: KindUpload,
				Hosts:    []string{"worker2", "bastion"},
				Parallel: 10, Timeout: Duration(10 * time.Minute), Attempts: 3,
				Upload: &UploadStep{
					Src: filepath.Join(dir, "files", "motd.tmpl"), Template: true,
					Dest: "/etc/motd", Mode: 0o640, Owner: "root", Group: "adm",
				},
			},
			{
				Name: "plain file", Kind: KindUpload,
				Hosts:    []string{"master"},
				Parallel: 10, Timeout: Duration(10 * time.Minute), Attempts: 3,
				Upload: &UploadStep{
					Src:  filepath.Join(dir, "files", "plain.txt"),
					Dest: "/usr/local/bin/plain", Mode: 0o755, // unquoted 0755 is octal
				},
			},
		},
	}
	comparePlans(t, plan, want)

	// Via is a copy with no Via of its own, not a pointer into Plan.Hosts.
	m, _ := plan.HostByName("master")
	if m.Via == nil || m.Via.Via != nil || m.Via == &plan.Hosts[2] {
		t.Errorf("master.Via = %+v, want a copy of bastion", m.Via)
	}
}

func comparePlans(t *testing.T, got, want *Plan) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	g, _ := json.MarshalIndent(got, "", "  ")
	w, _ := json.MarshalIndent(want, "", "  ")
	gl, wl := strings.Split(string(g), "\n"), strings.Split(string(w), "\n")
	for i := range min(len(gl), len(wl)) {
		if gl[i] != wl[i] {
			t.Fatalf("plans differ at JSON line %d:\ngot  %s\nwant %s\n\ngot:\n%s", i+1, gl[i], wl[i], g)
		}
	}
	t.Fatalf("plans differ:\ngot:\n%s\nwant:\n%s", g, w)
}

// TestLoadMinimal checks every default.
func TestLoadMinimal(t *testing.T) {
	home := fakeHome(t)
	plan, err := Load(filepath.Join("testdata", "valid", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Plan{
		Name:   "minimal",
		Source: filepath.Join("testdata", "valid", "minimal.yaml"),
		Hosts: []Host{{
			Name: "only", Address: "127.0.0.1", Port: 22, User: "root",
			IdentityFile:   "/etc/clusterflow/id_ed25519",
			KnownHostsFile: filepath.Join(home, ".ssh", "known_hosts"),
			HostKeyPolicy:  HostKeyStrict,
		}},
		Steps: []Step{{
			Name: "true", Kind: KindRun, Hosts: []string{"only"},
			Parallel: 10, MaxFailPercent: 0, Timeout: Duration(10 * time.Minute), Attempts: 3,
			Run: &RunStep{Command: []string{"true"}, ExitCodes: []int{0}},
		}},
	}
	comparePlans(t, plan, want)
}

// TestParseInline checks that Parse resolves relative paths against baseDir and names
// included files after it.
func TestParseInline(t *testing.T) {
	fakeHome(t)
	base := filepath.Join("testdata", "valid")
	data, err := os.ReadFile(filepath.Join(base, "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Parse("inline", data, base)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Source != "inline" {
		t.Errorf("Source = %q, want inline", plan.Source)
	}
	w2, _ := plan.HostByName("worker2")
	if want := mustAbs(t, filepath.Join(base, "keys", "id_worker")); w2.IdentityFile != want {
		t.Errorf("worker2.IdentityFile = %q, want %q", w2.IdentityFile, want)
	}

	// Errors in an included file name it relative to baseDir as given.
	bad := strings.Replace(string(data), "inventory/workers.yaml", "inventory/nope.yaml", 1)
	_, err = Parse("inline", []byte(bad), base)
	if err == nil || !strings.HasPrefix(err.Error(), `inline:14:15: spec.inventory.include[0]: cannot read included file "inventory/nope.yaml"`) {
		t.Errorf("got %v", err)
	}
}

// TestJSONRoundTrip checks that a plan survives the trip through a Temporal payload.
func TestJSONRoundTrip(t *testing.T) {
	fakeHome(t)
	plan, err := Load(filepath.Join("testdata", "valid", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"timeout":"1m30s"`) {
		t.Errorf("durations should read as strings in JSON: %s", b)
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	comparePlans(t, &back, plan)
	normalizeAgain(t, plan)
}

// TestTemplateData renders the valid fixture's template for one host.
func TestTemplateData(t *testing.T) {
	fakeHome(t)
	plan, err := Load(filepath.Join("testdata", "valid", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	up := plan.Steps[2].Upload
	text, err := os.ReadFile(up.Src)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := NewTemplate(filepath.Base(up.Src), string(text))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := plan.HostByName("worker2")
	var out strings.Builder
	if err := tmpl.Execute(&out, NewTemplateData(h, plan.Vars)); err != nil {
		t.Fatal(err)
	}
	if want := "hi from worker2.lab.example (worker2.lab.example)\ngroup workers\ngroup edge\n"; out.String() != want {
		t.Errorf("rendered:\n%s\nwant:\n%s", out.String(), want)
	}

	// A missing variable is an error, not "<no value>", even without vars.
	tmpl, _ = NewTemplate("x", "{{.Vars.nope}}")
	if err := tmpl.Execute(&out, NewTemplateData(h, nil)); err == nil {
		t.Error("a missing var rendered without error")
	}
}

// TestTemplateCheckedAtLoad checks that templates are rendered once per target host
// while loading, so that wrong fields and missing vars stop the run before it starts.
func TestTemplateCheckedAtLoad(t *testing.T) {
	dir := t.TempDir()
	upload := strings.Replace(validMinimal, "      kind: run\n      hosts: all\n      command: [uname, -a]\n",
		"      kind: upload\n      hosts: all\n      src: t.tmpl\n      template: true\n      dest: /tmp/x\n", 1)
	for text, want := range map[string]string{
		"{{.Host.Name}} {{.Host.Address}} {{.Host.Groups}}": "",
		"{{.Vars.missing}}":     `inline:17:12: spec.steps[0].src: template fails for host "master": template: t.tmpl:1:7: executing "t.tmpl" at <.Vars.missing>: map has no entry for key "missing"`,
		"{{.Host.Port}}":        `inline:17:12: spec.steps[0].src: template fails for host "master": template: t.tmpl:1:7: executing "t.tmpl" at <.Host.Port>: can't evaluate field Port`,
		"{{.Host.Name":          `inline:17:12: spec.steps[0].src: is not a valid template: template: t.tmpl:1: unclosed action`,
		"{{range .Vars}}{{end}": `inline:17:12: spec.steps[0].src: is not a valid template`,
	} {
		writeFile(t, filepath.Join(dir, "t.tmpl"), text)
		_, err := Parse("inline", []byte(upload), dir)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", text, err)
		case want != "" && (err == nil || !strings.HasPrefix(err.Error(), want)):
			t.Errorf("%s:\ngot  %v\nwant %s...", text, err, want)
		}
	}
}

// TestExamples loads every example playbook in this folder. They include the inventory
// that `lab up` writes at run time, so each is copied into a temporary tree with the
// same layout next to a fake inventory.
func TestExamples(t *testing.T) {
	fakeHome(t)
	examples, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(examples) == 0 {
		t.Fatal("no example playbooks")
	}
	root := t.TempDir()
	copyTree(t, ".", filepath.Join(root, "playbooks"), func(rel string) bool {
		return filepath.Ext(rel) == ".yaml" && !strings.Contains(rel, string(filepath.Separator)) ||
			strings.HasPrefix(rel, "files"+string(filepath.Separator)) ||
			strings.HasPrefix(rel, "stacks"+string(filepath.Separator)) ||
			strings.HasPrefix(rel, "images"+string(filepath.Separator))
	})
	// The shape lab/inventory.go writes.
	inv := `# Written by ` + "`lab up`" + ` (clusterflow lab); rewritten on every run: do not edit.
apiVersion: clusterflow.io/v1
kind: Inventory
spec:
  defaults: {user: root, port: 22, identityFile: id_ed25519, knownHostsFile: known_hosts}
  hosts:
    - {name: master, address: 172.30.0.10, groups: [managers]}
    - {name: slave01, address: 172.30.0.11, groups: [workers]}
    - {name: slave02, address: 172.30.0.12, groups: [workers]}
`
	writeFile(t, filepath.Join(root, ".clusterflow", "lab", "inventory.yaml"), inv)
	// What `lab up` puts beside it when the lab has a consul binary.
	writeFile(t, filepath.Join(root, ".clusterflow", "lab", "consul"), "#!/bin/sh\n")
	writeFile(t, filepath.Join(root, ".clusterflow", "lab", "consul.SHA256SUMS"),
		"1c4b8d8a9e3f2a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b  consul\n")

	for _, ex := range examples {
		t.Run(ex, func(t *testing.T) {
			plan, err := Load(filepath.Join(root, "playbooks", ex))
			if err != nil {
				t.Fatal(err)
			}
			normalizeAgain(t, plan)
			for _, s := range plan.Steps {
				if s.Upload == nil || !s.Upload.Template {
					continue
				}
				renderAll(t, plan, s.Upload.Src)
			}
		})
	}

	t.Run("hello", func(t *testing.T) {
		plan, err := Load(filepath.Join(root, "playbooks", "hello.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if plan.Name != "hello" || plan.Cluster != "lab" {
			t.Errorf("name, cluster = %q, %q; want hello, lab", plan.Name, plan.Cluster)
		}
		m, _ := plan.HostByName("master")
		if want := filepath.Join(root, ".clusterflow", "lab", "id_ed25519"); m.IdentityFile != want {
			t.Errorf("master.IdentityFile = %q, want %q", m.IdentityFile, want)
		}
		var kinds []string
		for _, s := range plan.Steps {
			kinds = append(kinds, s.Kind)
			if strings.Join(s.Hosts, ",") != "master,slave01,slave02" {
				t.Errorf("step %q runs on %v, want every host", s.Name, s.Hosts)
			}
		}
		if strings.Join(kinds, ",") != "run,upload,run" {
			t.Errorf("kinds = %v, want run, upload, run", kinds)
		}
		if plan.Steps[2].Run.Creates == "" {
			t.Error("the last step should be guarded by creates")
		}
		if got, want := plan.Steps[1].Upload.Src, filepath.Join(root, "playbooks", "files", "motd.tmpl"); got != want {
			t.Errorf("upload src = %q, want %q", got, want)
		}
	})
}

// renderAll renders an upload template for every host of plan.
func renderAll(t *testing.T, plan *Plan, src string) {
	t.Helper()
	text, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := NewTemplate(filepath.Base(src), string(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range plan.Hosts {
		var out strings.Builder
		if err := tmpl.Execute(&out, NewTemplateData(h, plan.Vars)); err != nil {
			t.Errorf("%s for %s: %v", src, h.Name, err)
		}
		if !strings.Contains(out.String(), h.Name) {
			t.Errorf("%s for %s does not name the host:\n%s", src, h.Name, out.String())
		}
	}
}

// copyTree copies the regular files under from for which keep(relative path) is true.
func copyTree(t *testing.T, from, to string, keep func(string) bool) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil || !keep(rel) {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		writeFile(t, filepath.Join(to, rel), string(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
