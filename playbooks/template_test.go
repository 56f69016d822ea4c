package playbooks

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTemplateWorkRefused(t *testing.T) {
	for text, want := range map[string]string{
		"{{range 100000000000}}{{end}}":                                                                  "t:1:8: the template does too much work",
		"{{range 5000001}}{{end}}":                                                                       "does too much work",
		"{{$n := 100000000000}}{{range $n}}{{end}}":                                                      "does too much work",
		"{{range (100000000000)}}{{end}}":                                                                "does too much work",
		"{{range 3000}}{{range 3000}}{{end}}{{end}}":                                                     "does too much work",
		"{{range .Vars}}{{range .Vars}}{{range 1000}}x{{end}}{{end}}{{end}}":                             "does too much work",
		"{{with 100000000000}}{{range .}}{{end}}{{end}}":                                                 "does too much work",
		"{{$n := 100000000000}}{{with $n}}{{range .}}{{end}}{{end}}":                                     "does too much work",
		"{{range 100000}}{{range .}}{{end}}{{end}}":                                                      "does too much work",
		"{{range $i := 100000}}{{range $i}}{{end}}{{end}}":                                               "does too much work",
		`{{define "x"}}{{range .}}{{end}}{{end}}{{template "x" 100000000000}}`:                           "does too much work",
		"{{range len .Vars.x}}{{end}}":                                                                   "range over the result of len is not supported",
		`{{define "a"}}{{template "a" .}}{{end}}{{template "a" .}}`:                                      `template "a" calls itself`,
		`{{define "a"}}{{template "b"}}{{end}}{{define "b"}}{{range 100}}{{template "a"}}{{end}}{{end}}`: "calls itself",
		`{{define "b"}}{{range 3000}}{{end}}{{end}}{{range 3000}}{{template "b"}}{{end}}`:                "does too much work",
	} {
		_, err := NewTemplate("t", text)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", text, err, want)
		}
	}
	for _, text := range []string{
		"{{range 100000}}.{{end}}",
		"{{range $i, $g := .Host.Groups}}{{$i}} {{$g}}{{end}}",
		"{{with .Host.Groups}}{{range .}}{{.}}{{end}}{{end}}",
		"{{range .Vars}}{{range $.Host.Groups}}{{end}}{{end}}",
		"{{range slice .Host.Groups 0}}{{.}}{{end}}",
		`{{define "g"}}{{range .}}{{.}}{{end}}{{end}}{{template "g" .Host.Groups}}{{template "g" .Host.Groups}}`,
	} {
		if _, err := NewTemplate("t", text); err != nil {
			t.Errorf("%s: %v", text, err)
		}
	}
}

func TestRenderTemplateBudgets(t *testing.T) {
	data := NewTemplateData(Host{Name: "a"}, nil)
	// Output: stopped at the limit.
	tmpl, err := NewTemplate("t", `{{range 100000}}{{printf "%0100d" 0}}{{end}}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RenderTemplateBytes(tmpl, data, 1<<20, time.Minute); !errors.Is(err, ErrTemplateBudget) || !strings.Contains(err.Error(), "more than 1.0 MiB") {
		t.Fatalf("output budget: %v", err)
	}
	// Time: a template that writes is stopped at the deadline. 100000 x 1e6 bytes
	// would take minutes; the output limit is set high so time ends it.
	tmpl, err = NewTemplate("t", `{{range 100000}}{{printf "%01000000d" 0}}{{end}}`)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = RenderTemplateBytes(tmpl, data, 1<<40, 200*time.Millisecond)
	took := time.Since(start)
	if !errors.Is(err, ErrTemplateBudget) || !strings.Contains(err.Error(), "longer than 200ms") {
		t.Fatalf("time budget: %v", err)
	}
	if took > 5*time.Second {
		t.Fatalf("stopped after %s", took)
	}
	t.Logf("time budget: stopped after %s", took)
	// Within budget: the bytes.
	tmpl, _ = NewTemplate("t", "hi {{.Host.Name}}")
	if out, err := RenderTemplateBytes(tmpl, data, 100, time.Second); err != nil || string(out) != "hi a" {
		t.Fatalf("%q %v", out, err)
	}
}

// TestTemplateCheckBounded: the integer range of the issue is refused at the src line
// in no time, where it used to spin forever.
func TestTemplateCheckBounded(t *testing.T) {
	dir := t.TempDir()
	upload := strings.Replace(validMinimal, "      kind: run\n      hosts: all\n      command: [uname, -a]\n",
		"      kind: upload\n      hosts: all\n      src: t.tmpl\n      template: true\n      dest: /tmp/x\n", 1)
	writeFile(t, filepath.Join(dir, "t.tmpl"), "{{range 100000000000}}{{end}}")
	start := time.Now()
	_, err := Parse("inline", []byte(upload), dir)
	want := `inline:17:12: spec.steps[0].src: is not a valid template: template: t.tmpl:1:8: the template does too much work`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got  %v\nwant %s...", err, want)
	}
	t.Logf("refused in %s", time.Since(start))
}

// TestTemplateWorkWithinBudget: the most work checkTemplateWork lets through, without
// output, renders well within TemplateBudget.
func TestTemplateWorkWithinBudget(t *testing.T) {
	for _, text := range []string{
		"{{range 4999990}}{{end}}",
		"{{range 1666000}}{{if .}}{{end}}{{end}}",
		"{{range 1600}}{{range 3000}}{{end}}{{end}}",
	} {
		tmpl, err := NewTemplate("t", text)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		start := time.Now()
		if _, err := RenderTemplateBytes(tmpl, NewTemplateData(Host{Name: "a"}, nil), 1<<20, TemplateBudget); err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		t.Logf("%s: %s", text, time.Since(start))
	}
}

// TestTemplateCheckedForData: nested ranges over vars pass NewTemplate (a range over
// data counted as 1000) but are refused for a playbook with 5000 vars.
func TestTemplateCheckedForData(t *testing.T) {
	tmpl, err := NewTemplate("t", "{{range .Vars}}{{range $.Vars}}{{end}}{{end}}")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckTemplateData(tmpl, 1000); err != nil {
		t.Fatal(err)
	}
	if err := CheckTemplateData(tmpl, 5000); err == nil || !strings.Contains(err.Error(), "does too much work") {
		t.Fatalf("5000 vars: %v", err)
	}
}
