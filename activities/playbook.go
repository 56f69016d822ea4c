package activities

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/clusterflow/clusterflow/internal/workerfs"
	"github.com/clusterflow/clusterflow/playbooks"
)

// Playbooks loads playbooks on the worker's side. It serves runs started from the
// Temporal Web UI, whose input names a playbook file (or carries one inline) instead
// of a plan resolved by the starter.
type Playbooks struct {
	dir   string           // directory that playbook names are resolved in
	files *workerfs.Policy // what the playbook may name on the worker (nil: anything)
}

// NewPlaybooks returns the activity set that reads playbooks from dir.
func NewPlaybooks(dir string) *Playbooks { return &Playbooks{dir: dir} }

// LoadPlaybookRequest names a playbook file or carries one inline.
type LoadPlaybookRequest struct {
	Playbook string `json:"playbook,omitempty"` // file name, relative to the worker's playbook directory
	Inline   string `json:"inline,omitempty"`   // YAML text of a whole playbook
}

// LoadPlaybook reads, validates and resolves a playbook. Validation errors are
// non-retryable: the same input fails the same way every time.
func (p *Playbooks) LoadPlaybook(_ context.Context, req LoadPlaybookRequest) (*playbooks.Plan, error) {
	var (
		plan *playbooks.Plan
		err  error
	)
	switch {
	case req.Playbook != "" && req.Inline != "":
		return nil, invalidInput("give either playbook or inline, not both")
	case req.Inline != "":
		plan, err = playbooks.ParseWith("inline", []byte(req.Inline), p.dir, playbooks.Options{Files: p.files})
	case req.Playbook != "":
		path, perr := p.resolve(req.Playbook)
		if perr != nil {
			return nil, perr
		}
		plan, err = playbooks.LoadWith(path, playbooks.Options{Files: p.files})
	default:
		return nil, invalidInput(`input names no playbook: give {"playbook": "NAME.yaml"} or {"inline": "..."}`)
	}
	if err != nil {
		return nil, invalidInput(err.Error())
	}
	return plan, nil
}

// resolve maps a playbook name to a file inside the playbook directory and refuses
// names that would escape it.
func (p *Playbooks) resolve(name string) (string, error) {
	if filepath.IsAbs(name) {
		return "", invalidInput(fmt.Sprintf("playbook %q: give a name relative to the worker's playbook directory %s", name, p.dir))
	}
	clean := filepath.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", invalidInput(fmt.Sprintf("playbook %q is outside the worker's playbook directory %s", name, p.dir))
	}
	if filepath.Ext(clean) == "" {
		clean += ".yaml"
	}
	return filepath.Join(p.dir, clean), nil
}
