package playbooks

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFieldUsesCoverKinds: the table of what the common fields do has every kind,
// and each of its entries says either what the field does or why it is refused.
func TestFieldUsesCoverKinds(t *testing.T) {
	for _, k := range Kinds() {
		u, ok := fieldUses[k]
		if !ok {
			t.Errorf("kind %s has no entry in fieldUses", k)
			continue
		}
		for _, f := range unusedFields {
			if x := u.of(f); (x.effect == "") == (x.why == "") {
				t.Errorf("kind %s, field %s: give exactly one of effect and why: %+v", k, f, x)
			}
		}
	}
	for k := range fieldUses {
		if _, ok := stepKinds[k]; !ok {
			t.Errorf("fieldUses has %s, which is not a step kind", k)
		}
	}
}

// TestUnusedFieldsJSON: a plan sent as JSON may carry the defaults (the parser writes
// them into every plan) on any kind; another value of a field the kind does not use
// is refused, naming the step and the field.
func TestUnusedFieldsJSON(t *testing.T) {
	plan, err := Parse("inline", []byte(`apiVersion: clusterflow.io/v1
kind: Playbook
metadata: {name: t}
spec:
  inventory:
    hosts: [{name: a, address: 127.0.0.1, user: root, identityFile: /k/id}]
  steps:
    - {name: hello, kind: run, hosts: all, command: [true], timeout: 1m, attempts: 1, parallel: 2}
    - {name: docker, kind: installDocker, hosts: all}
    - {name: rotate, kind: rotateCA, hosts: all, timeout: 1h}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(plan)
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.CheckFieldUse(); err != nil {
		t.Fatalf("a parsed plan: %v", err)
	}
	i := slices.IndexFunc(back.Steps, func(s Step) bool { return s.Kind == KindInstallDocker })
	if i < 0 {
		t.Fatal("cluster.yaml has no installDocker step")
	}
	s := &back.Steps[i]
	s.Parallel = 3 // installDocker uses parallel
	if err := back.CheckFieldUse(); err != nil {
		t.Fatalf("parallel on installDocker: %v", err)
	}
	s.Timeout = Duration(30 * time.Minute)
	want := "plan.steps[" + strconv.Itoa(i) + "] (" + s.Name + "): timeout: kind installDocker does not use timeout: " +
		"its activities have bounds of their own (a package install up to 20m); set it to the default (10m)"
	if err := back.CheckFieldUse(); err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}

	k := Step{Kind: KindCheckCertificates, Timeout: Duration(time.Hour), Parallel: defaultParallel, Attempts: defaultAttempts,
		CheckCertificates: &CheckCertificatesStep{Action: CertActionRotate}}
	if ps := k.UnusedFields(); len(ps) > 0 {
		t.Errorf("timeout with action rotate: %v", ps)
	}
	k.CheckCertificates.Action = CertActionFail
	if ps := k.UnusedFields(); len(ps) != 1 || ps[0].Field != "timeout" {
		t.Errorf("timeout with action fail: %v", ps)
	}
	r := Step{Kind: KindRotateCA, Timeout: Duration(time.Hour), Parallel: 1, Attempts: 1}
	if ps := r.UnusedFields(); len(ps) != 2 || ps[0].Field != "parallel" || ps[1].Field != "attempts" {
		t.Errorf("rotateCA: %v", ps)
	}
}

// fieldUseRow is the row of kind k in the table README.md shows (doc.go shows the
// same cells, one kind a line).
func fieldUseRow(k string) []string {
	u := fieldUses[k]
	row := []string{"`" + k + "`"}
	for _, f := range []string{"parallel", "maxFailPercent", "timeout", "attempts"} {
		if f == "maxFailPercent" {
			row = append(row, "failure budget")
			continue
		}
		if x := u.of(f); x.effect != "" {
			row = append(row, x.effect)
		} else {
			row = append(row, "refused: "+x.why)
		}
	}
	return row
}

// readmeReference is README.md's playbook reference: its sections "Procedures" (an
// example of each procedure kind), "Playbook format v1" (the step reference) and
// "Certificate rotation" (rotateCA and checkCertificates).
func readmeReference(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out string
	for _, title := range []string{"Procedures", "Playbook format v1", "Certificate rotation"} {
		s := string(b)
		start := strings.Index(s, "\n## "+title+"\n")
		if start < 0 {
			t.Fatalf("README.md has no section %q", "## "+title)
		}
		s = s[start+1:]
		if end := strings.Index(s, "\n## "); end >= 0 {
			s = s[:end]
		}
		out += s
	}
	return out
}

// docText is doc.go's comment text, its line prefixes removed.
func docText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimPrefix(l, "//")
		lines = append(lines, strings.TrimSpace(l))
	}
	return strings.Join(lines, "\n")
}

// TestFieldUseDocumented: README.md's step reference and doc.go show the table of what
// the common fields do, as fieldUses has it.
func TestFieldUseDocumented(t *testing.T) {
	readme, doc := readmeReference(t), docText(t)
	for _, k := range Kinds() {
		row := fieldUseRow(k)
		if line := "| " + strings.Join(row, " | ") + " |"; !strings.Contains(readme, line) {
			t.Errorf("README.md's playbook reference lacks the row\n%s", line)
		}
		if line := strings.Trim(row[0], "`") + ": " + strings.Join(row[1:], " | "); !strings.Contains(doc, line) {
			t.Errorf("doc.go lacks the line\n%s", line)
		}
	}
}

// acceptedKeys are the keys the parser accepts, found in its source: every string its
// checkKeys calls name (literally or through a []string variable), and the fields of
// every step kind.
func acceptedKeys(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	add := func(k string) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	var strs func(n ast.Node)
	strs = func(n ast.Node) {
		ast.Inspect(n, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.BasicLit:
				if x.Kind == token.STRING {
					if s, err := strconv.Unquote(x.Value); err == nil {
						add(s)
					}
				}
			case *ast.Ident:
				if x.Obj != nil && x.Obj.Kind == ast.Var {
					switch d := x.Obj.Decl.(type) {
					case *ast.ValueSpec:
						for _, v := range d.Values {
							strs(v)
						}
					case *ast.AssignStmt:
						for _, v := range d.Rhs {
							strs(v)
						}
					}
				}
			}
			return true
		})
	}
	calls := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "checkKeys" && len(call.Args) > 1 {
				calls++
				for _, a := range call.Args[1:] {
					strs(a)
				}
			}
			return true
		})
	}
	if calls < 10 {
		t.Fatalf("found %d checkKeys calls; the parser has more", calls)
	}
	for _, f := range commonStepFields {
		add(f)
	}
	for _, k := range Kinds() {
		for _, f := range stepKinds[k].fields {
			add(f)
		}
	}
	return keys
}

// TestReferenceComplete: every step kind, and every field a step accepts, is in
// README.md's playbook reference; every key the parser accepts anywhere is in doc.go's
// format reference (written as "key:").
func TestReferenceComplete(t *testing.T) {
	readme, doc := readmeReference(t), docText(t)
	for _, k := range Kinds() {
		if !regexp.MustCompile(`kind: ` + k + `\b`).MatchString(readme) {
			t.Errorf("README.md's playbook reference has no example of kind %s (kind: %s)", k, k)
		}
		if !regexp.MustCompile(`(?m)kinds? [^\n]*\b` + k + `\b`).MatchString(doc) {
			t.Errorf("doc.go's format reference has no section for kind %s", k)
		}
		var fs []string
		for _, f := range stepKinds[k].fields {
			fs = append(fs, "`"+f+"`")
		}
		if row := "| `" + k + "` | " + strings.Join(fs, ", ") + " |"; !strings.Contains(readme, row) {
			t.Errorf("README.md's step reference lacks the row\n%s", row)
		}
		for _, f := range append(slices.Clone(commonStepFields), stepKinds[k].fields...) {
			if !strings.Contains(readme, "`"+f+"`") && !regexp.MustCompile(`\b`+f+`:`).MatchString(readme) {
				t.Errorf("README.md's playbook reference does not name field %s (of kind %s)", f, k)
			}
		}
	}
	for _, key := range acceptedKeys(t) {
		if !regexp.MustCompile(`(^|[^A-Za-z0-9_])` + regexp.QuoteMeta(key) + `:`).MatchString(doc) {
			t.Errorf("doc.go's format reference does not show key %s (as %s:)", key, key)
		}
	}
}
