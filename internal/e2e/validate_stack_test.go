//go:build integration || lab

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
)

// TestValidateRefusesBadComposeFiles runs `starter validate` on a playbook with a
// deployStack step for each malformed Compose file of internal/compose's fixtures
// (unknown and unsupported keys, wrong types, undefined secrets, files outside
// the playbook directory, bad ports and modes, ...): each is refused, exit status
// 2, with the Compose file, the line and the field path its fixture names. `starter
// run` of one of them starts nothing.
func TestValidateRefusesBadComposeFiles(t *testing.T) {
	c := newCluster(t, 0)
	root := filepath.Join(c.dir, "root")
	if err := os.CopyFS(root, os.DirFS(filepath.Join("..", "compose", "testdata", "invalid"))); err != nil {
		t.Fatal(err)
	}
	// What the fixtures try to reach beside the playbook directory, and a link out.
	writeText(t, filepath.Join(c.dir, "outside.txt"), "OUTSIDE-CONTENT-e2e\n")
	writeText(t, filepath.Join(c.dir, "outside.yaml"), "services:\n  base:\n    image: OUTSIDE-CONTENT-e2e\n")
	if err := os.Symlink("../outside.txt", filepath.Join(root, "link-out.txt")); err != nil {
		t.Fatal(err)
	}
	fixtures, err := filepath.Glob(filepath.Join(root, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wantLine := regexp.MustCompile(`^# want: (?:([^ :]+):)?(\d+) (\S*) (.*)$`)
	refused, checked, fields := 0, 0, 0
	var playbooks []string
	for _, f := range fixtures {
		name := filepath.Base(f)
		first, _, _ := strings.Cut(readFile(t, f), "\n")
		m := wantLine.FindStringSubmatch(first)
		if m == nil {
			t.Fatalf("%s: no want line", name)
		}
		pb := filepath.Join(root, "pb-"+strings.TrimSuffix(name, ".yaml")+".yml")
		writeText(t, pb, fmt.Sprintf(`apiVersion: clusterflow.io/v1
kind: Playbook
metadata: {name: bad-stack}
spec:
  inventory:
    hosts:
      - {name: master, address: 127.0.0.1, user: root, identityFile: /nonexistent/key, knownHostsFile: /nonexistent/known_hosts}
  steps:
    - name: stack
      kind: deployStack
      hosts: [master]
      stack: bad
      compose: %s
`, name))
		playbooks = append(playbooks, pb)
		out, code := validate(t, pb)
		file := name
		if m[1] != "" {
			file = m[1]
		}
		at := fmt.Sprintf("%s:%s:", filepath.Join(root, file), m[2])
		if code != 2 {
			t.Errorf("%s: exit %d, want 2 (refused)\n%s", name, code, out)
			continue
		}
		refused++
		ok := false
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, at) && (m[3] == "" || strings.Contains(line, " "+m[3]+": ")) && strings.Contains(line, m[4]) {
				ok = true
				t.Logf("%-28s %s", name, strings.TrimPrefix(line, root+string(filepath.Separator)))
			}
			if strings.Contains(line, "OUTSIDE-CONTENT") {
				t.Errorf("%s: a message quotes a file outside the playbook directory: %s", name, line)
			}
		}
		if !ok {
			t.Errorf("%s: no error at %s naming %s (%q):\n%s", name, at, m[3], m[4], out)
			continue
		}
		checked++
		if m[3] != "" {
			fields++
		}
	}
	t.Logf("%d malformed Compose files: %d refused by starter validate, %d at the file and line of their fixture, %d of them with its field path (the others: YAML syntax)",
		len(fixtures), refused, checked, fields)
	if fields < 20 {
		t.Errorf("only %d fixtures checked, want at least 20", checked)
	}
	// A bad file starts nothing: `starter run` refuses it before any workflow.
	if out, code := c.starter("run", playbooks[0]); code != 2 {
		t.Errorf("starter run of a bad stack: exit %d, want 2\n%s", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetExecutions()); n != 0 {
		t.Errorf("%d workflows started, want none", n)
	}
}

// validate runs `starter validate` (which talks to no server) on a playbook.
func validate(t *testing.T, pb string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "starter"), "validate", pb)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// randomText is a random string long enough to scan histories for.
func randomText(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "pw-" + hex.EncodeToString(b)
}

func writeText(t *testing.T, p, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies a directory tree of regular files.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		return os.WriteFile(filepath.Join(to, rel), b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}
