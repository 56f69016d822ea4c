package playbooks

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// want is one expected error, read from a "# want:" line at the top of a fixture:
//
//	# want: LINE:COLUMN: FIELD: MESSAGE-PREFIX
//	# want: LINE: MESSAGE-PREFIX                   (YAML syntax errors: no column, no field)
//	# want: MESSAGE-PREFIX                         (the whole file: no position)
//	# want: OTHER.yaml:LINE:COLUMN: FIELD: ...      (an error in an included file)
//
// The file is the fixture unless named; OTHER.yaml is relative to testdata/invalid.
// Several "# want:" lines list several errors, in the order they are reported.
type want struct {
	file      string
	line, col int
	rest      string // FIELD: MESSAGE-PREFIX, or MESSAGE-PREFIX when there is no field
}

var wantLine = regexp.MustCompile(`^(?:([^\s:]+\.yaml):)?(?:(\d+)(?::(\d+))?: )?(.+)$`)

func readWants(t *testing.T, path string) []want {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wants []want
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text, ok := strings.CutPrefix(sc.Text(), "# want: ")
		if !ok {
			break
		}
		m := wantLine.FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("%s: cannot read want line %q", path, text)
		}
		w := want{file: path, rest: m[4]}
		if m[1] != "" {
			w.file = filepath.Join(filepath.Dir(path), m[1])
		}
		w.line, _ = strconv.Atoi(m[2])
		w.col, _ = strconv.Atoi(m[3])
		wants = append(wants, w)
	}
	if len(wants) == 0 {
		t.Fatalf("%s: the first line must be # want: LINE:COLUMN: FIELD: MESSAGE", path)
	}
	return wants
}

// TestInvalidPlaybooks loads every playbook in testdata/invalid and checks that it is
// refused with exactly the errors its "# want:" lines list: same file, position and
// field, and a message that starts as written. Exactly: no extra errors, so the
// fixtures also check that one mistake does not cascade into several messages.
func TestInvalidPlaybooks(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found %d invalid fixtures, want at least 20", len(files))
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			t.Parallel()
			wants := readWants(t, path)
			plan, err := Load(path)
			if err == nil {
				t.Fatalf("Load accepted the playbook: %+v", plan)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList: %v", err, err)
			}
			if len(list) != len(wants) {
				t.Fatalf("got %d errors, want %d:\n%v", len(list), len(wants), err)
			}
			for i, w := range wants {
				checkError(t, list[i], w)
			}
		})
	}
}

func checkError(t *testing.T, e *Error, w want) {
	t.Helper()
	got := e.Msg
	if e.Field != "" {
		got = e.Field + ": " + e.Msg
		if !strings.HasPrefix(w.rest, e.Field+": ") {
			t.Errorf("field is %q; want line says %q\nerror: %v", e.Field, w.rest, e)
		}
	}
	if e.File != w.file || e.Line != w.line || e.Column != w.col || !strings.HasPrefix(got, w.rest) {
		t.Errorf("got  %v\nwant %s:%d:%d: %s...", e, w.file, w.line, w.col, w.rest)
	}
}

// TestFileTooLarge checks the 1 MiB cap on playbooks and included inventories. The
// big files are made here rather than kept in the repository.
func TestFileTooLarge(t *testing.T) {
	dir := t.TempDir()
	big := "apiVersion: clusterflow.io/v1\n" + strings.Repeat("# padding padding padding padding padding padding\n", 2<<20/50)
	path := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}

	_, err := Load(path)
	wantOnly(t, err, &Error{File: path, Msg: "file is too large (2.0 MiB); the limit is 1.0 MiB"})

	_, err = Parse("inline", []byte(big), dir)
	wantOnly(t, err, &Error{File: "inline", Msg: "file is too large (2.0 MiB); the limit is 1.0 MiB"})

	// An included inventory over the cap is reported at the include entry.
	pb := strings.Replace(validMinimal, "  inventory:\n", "  inventory:\n    include: [big.yaml]\n", 1)
	_, err = Parse("inline", []byte(pb), dir)
	wantOnly(t, err, &Error{File: "inline", Line: 8, Column: 15, Field: "spec.inventory.include[0]",
		Msg: `cannot read included file "big.yaml" (` + path + "): file is too large (2.0 MiB); the limit is 1.0 MiB"})
}

// wantOnly checks that err is an ErrorList holding exactly the error w.
func wantOnly(t *testing.T, err error, w *Error) {
	t.Helper()
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error is %T, want ErrorList: %v", err, err)
	}
	if len(list) != 1 || *list[0] != *w {
		t.Fatalf("got errors:\n%v\nwant only:\n%v", err, w)
	}
}

// validMinimal is a valid playbook with one host and one step; tests edit it.
// Line 8 is "    hosts:", the first line under "  inventory:" (line 7).
const validMinimal = `apiVersion: clusterflow.io/v1
kind: Playbook
metadata:
  name: tiny
spec:
  hostKeyPolicy: strict
  inventory:
    hosts:
      - name: master
        address: 192.168.56.101
        user: root
        identityFile: /keys/id_ed25519
  steps:
    - name: hello
      kind: run
      hosts: all
      command: [uname, -a]
`

// TestNoCascade checks that errors which make later checks meaningless do not bring a
// flood of follow-up errors.
func TestNoCascade(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, old, new string
		hosts          string   // the step's hosts
		want           []string // Error() texts, in order
	}{
		{
			name:  "missing include hides unknown hosts",
			old:   "  inventory:\n",
			new:   "  inventory:\n    include: [nope.yaml]\n",
			hosts: "[master, worker9]",
			// The step's hosts name a host that may be in nope.yaml: not reported.
			want: []string{`inline:8:15: spec.inventory.include[0]: cannot read included file "nope.yaml"`},
		},
		{
			name: "unknown kind hides kind fields",
			old:  "kind: run",
			new:  "kind: exec\n      dest: /etc/motd",
			want: []string{`inline:15:13: spec.steps[0].kind: unknown step kind "exec"; kinds are:`},
		},
		{
			name:  "empty inventory is reported once",
			old:   "    hosts:\n      - name: master\n        address: 192.168.56.101\n        user: root\n        identityFile: /keys/id_ed25519\n",
			new:   "    hosts: []\n",
			hosts: "[master, worker9]",
			want:  []string{"inline:8:5: spec.inventory: the inventory has no hosts"},
		},
		{
			name: "unreadable defaults do not make every host lack a user",
			old:  "    hosts:\n      - name: master\n        address: 192.168.56.101\n        user: root\n        identityFile: /keys/id_ed25519\n",
			new:  "    defaults: root\n    hosts:\n      - name: master\n        address: 192.168.56.101\n",
			want: []string{`inline:8:15: spec.inventory.defaults: must be a mapping (key: value lines), got the string "root"`},
		},
		{
			name: "host with an invalid port still counts as a host",
			old:  "        user: root\n",
			new:  "        user: root\n        port: 0\n",
			want: []string{"inline:12:15: spec.inventory.hosts[0].port: must be between 1 and 65535, got 0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(validMinimal, tt.old, tt.new, 1)
			if tt.hosts != "" {
				src = strings.Replace(src, "hosts: all", "hosts: "+tt.hosts, 1)
			}
			_, err := Parse("inline", []byte(src), dir)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("want an ErrorList, got %v", err)
			}
			if len(list) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(list), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(list[i].Error(), w) {
					t.Errorf("error %d:\ngot  %v\nwant %s...", i, list[i], w)
				}
			}
		})
	}
}

// TestAllErrorsReported checks that independent mistakes are all reported, sorted by
// file (in reading order), line and column.
func TestAllErrorsReported(t *testing.T) {
	dir := t.TempDir()
	inv := "apiVersion: clusterflow.io/v1\nkind: Inventory\nspec:\n  hosts:\n    - {name: w1, address: 10.0.0.1, user: root, useAgent: yes}\n"
	if err := os.WriteFile(filepath.Join(dir, "inv.yaml"), []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `apiVersion: clusterflow.io/v1
kind: Playbook
metadata: {name: Multi}
spec:
  inventory:
    include: [inv.yaml]
    hosts:
      - {name: m, address: "m m", user: root, useAgent: true}
  steps:
    - {name: a, kind: run, hosts: all, command: [true], parallel: 0}
    - {name: b, kind: upload, hosts: all, src: nope, dest: /x, mode: "9"}
`
	_, err := Parse("multi.yaml", []byte(src), dir)
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("want an ErrorList, got %v", err)
	}
	var got []string
	for _, e := range list {
		got = append(got, strings.Join([]string{e.File, strconv.Itoa(e.Line), strconv.Itoa(e.Column), e.Field}, ":"))
	}
	want := []string{
		"multi.yaml:3:18:metadata.name",
		"multi.yaml:8:28:spec.inventory.hosts[0].address",
		"multi.yaml:10:67:spec.steps[0].parallel",
		"multi.yaml:11:48:spec.steps[1].src",
		"multi.yaml:11:70:spec.steps[1].mode",
		filepath.Join(dir, "inv.yaml") + ":5:59:spec.hosts[0].useAgent",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got errors at\n%s\nwant\n%s\nfull text:\n%v", strings.Join(got, "\n"), strings.Join(want, "\n"), err)
	}
}

// TestLargeInputs feeds Parse files near the 1 MiB cap built to be expensive: many
// errors, many names, many references (all but one invalid). Each must be read in well under a second on an
// idle machine; the bound is loose because tests share busy machines.
func TestLargeInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	head := "apiVersion: clusterflow.io/v1\nkind: Playbook\nmetadata: {name: big}\nspec:\n"
	hosts := func(n int) string {
		var b strings.Builder
		b.WriteString("  inventory:\n    hosts:\n")
		for i := range n {
			fmt.Fprintf(&b, "      - {name: h%d, address: 10.0.%d.%d, user: root, useAgent: true, groups: [g%d]}\n", i, i/250, i%250+1, i%50)
		}
		return b.String()
	}
	// fill repeats item(i) between prefix and suffix up to the size cap.
	fill := func(prefix string, item func(i int) string, suffix string) string {
		var b strings.Builder
		b.WriteString(prefix)
		for i := 0; ; i++ {
			it := item(i)
			if b.Len()+len(it)+len(suffix) > maxFileSize {
				break
			}
			b.WriteString(it)
		}
		b.WriteString(suffix)
		return b.String()
	}
	same := func(s string) func(int) string { return func(int) string { return s } }
	inputs := map[string]string{
		"unknown fields": fill(head+"  steps:\n    - name: a\n", func(i int) string { return fmt.Sprintf("      x%039d: 1\n", i) }, ""),
		"unknown hosts":  fill(head+hosts(900)+"  steps:\n    - {name: a, kind: run, command: [true], hosts: [", func(i int) string { return fmt.Sprintf("nohost%d, ", i) }, "]}\n"),
		"a big group":    fill(head+hosts(1000)+"  steps:\n    - {name: a, kind: run, command: [true], hosts: [", same("g1, "), "]}\n"),
		"too many hosts": head + hosts(12000),
		"many groups":    fill(head+"  inventory:\n    hosts:\n"+"      - {name: h, address: a, user: r, useAgent: true, groups: [", func(i int) string { return fmt.Sprintf("g%d, ", i) }, "]}\n"),
		"deep flow":      head + "  vars: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n",
		"many steps":     fill(head+hosts(1000)+"  steps:\n", same("    - {name: a, kind: run, hosts: all, command: [true]}\n"), ""),
	}
	for name, src := range inputs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if len(src) > maxFileSize {
				t.Fatalf("input is %d bytes, over the cap", len(src))
			}
			// No timed assert: the machine's load decides seconds. What must hold is
			// that parsing ends (the test binary's timeout catches a parser that does
			// not) and that the limits refuse what they should; the time is logged.
			start := time.Now()
			_, err := Parse(name, []byte(src), dir)
			if valid := name == "a big group"; (err == nil) != valid {
				t.Fatalf("valid = %v, got error %.300v", valid, err)
			}
			t.Logf("%d bytes in %v: %.200s", len(src), time.Since(start), err)
		})
	}
}

// TestIncludeDoesNotQuote checks that an included file that is not an inventory is
// refused without quoting what it holds: a playbook sent inline from the Web UI may
// name any file the worker can read.
func TestIncludeDoesNotQuote(t *testing.T) {
	dir := t.TempDir()
	secret := "s3cr3t-hash-value"
	for name, text := range map[string]string{
		"scalar.txt":  "root:" + secret + ":19000:0:99999:7:::\n",
		"mapping.txt": "apiVersion: " + secret + "\nkind: Inventory\n",
		"kind.txt":    "apiVersion: clusterflow.io/v1\nkind: " + secret + "\n",
		"list.txt":    "- " + secret + "\n",
	} {
		writeFile(t, filepath.Join(dir, name), text)
		src := strings.Replace(validMinimal, "  inventory:\n", "  inventory:\n    include: ["+name+"]\n", 1)
		_, err := Parse("inline", []byte(src), dir)
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("include %s: got %v", name, err)
		}
	}
}
