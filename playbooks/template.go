package playbooks

import (
	"errors"
	"text/template"
)

// TemplateData is what an upload template (template: true) is executed with: "." in
// the template. It is the data the UploadFile activity renders with (see
// activities.UploadRequest): the target host's name, address and groups, and the
// playbook's vars. Templates never see key material or other hosts.
//
//	This is {{.Host.Name}} ({{.Host.Address}}).
//	Groups: {{range .Host.Groups}}{{.}} {{end}}
//	{{.Vars.greeting}}
type TemplateData struct {
	Host TemplateHost
	Vars map[string]string
}

// TemplateHost is the target host as a template sees it.
type TemplateHost struct {
	Name    string
	Address string
	Groups  []string
}

// NewTemplateData returns the data an upload template is rendered with for host h.
func NewTemplateData(h Host, vars map[string]string) TemplateData {
	if vars == nil {
		vars = map[string]string{}
	}
	return TemplateData{Host: TemplateHost{Name: h.Name, Address: h.Address, Groups: h.Groups}, Vars: vars}
}

// NewTemplate parses an upload template the way it is rendered: Go text/template with
// its built-in functions only, and an error (not "<no value>") for a missing key such
// as an undefined {{.Vars.x}}.
func NewTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Parse(text)
}

// errTooMuchOutput stops a trial rendering that grows past maxUploadSize.
var errTooMuchOutput = errors.New("renders to more than 64 MiB")

// limitWriter discards what is written to it, failing once more than n bytes came.
type limitWriter struct{ n int64 }

func (w *limitWriter) Write(p []byte) (int, error) {
	w.n -= int64(len(p))
	if w.n < 0 {
		return 0, errTooMuchOutput
	}
	return len(p), nil
}
