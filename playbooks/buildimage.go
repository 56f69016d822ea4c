package playbooks

import (
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// BuildImageStep builds an image on one of the step's hosts (kind buildImage, the
// BuildImage workflow) from a build context on the worker, sent as a tar through
// the host's Engine API over SSH, and loads it into the step's other hosts
// (`docker save` from the builder, `docker load` into each: no registry). The
// context's digest is kept as a label of the image: a context that did not
// change is not built again, and a host that has the image is left alone.
type BuildImageStep struct {
	// Dir is the playbook's directory on the worker (absolute).
	Dir string `json:"dir"`
	// Context is the build context, a directory relative to Dir.
	Context string `json:"context"`
	// Dockerfile is relative to Context; default Dockerfile.
	Dockerfile string `json:"dockerfile"`
	// Tag names the image, as services and stacks then name it (web:1).
	Tag string `json:"tag"`
	// Args are build arguments (ARG); part of the digest.
	Args map[string]string `json:"args,omitempty"`
	// Target is the stage to build, for multi-stage Dockerfiles.
	Target string `json:"target,omitempty"`
	// Builder names the host (among the step's) that builds; default the first.
	Builder      string        `json:"builder,omitempty"`
	RegistryAuth *RegistryAuth `json:"registryAuth,omitempty"`
}

var (
	// imageTag is an image reference with a tag and no digest: [host[:port]/]path[:tag].
	imageTag = regexp.MustCompile(`^([a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?/)?[a-z0-9]+([._-]|__|[-]*[a-z0-9]+)*(/[a-z0-9]+([._-]|__|[-]*[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$`)
	// buildArgName is an ARG name.
	buildArgName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// readBuildImage reads a buildImage step. The context must be a directory and
// its Dockerfile a file, inside the playbook's directory.
func readBuildImage(f *file, m *fields, s *Step, c *stepContext) {
	b := &BuildImageStep{Dir: f.dir, Dockerfile: "Dockerfile"}
	s.BuildImage = b
	ctxNode, ctxPath := m.get("context")
	if ctxNode != nil {
		if rel, ok := f.dirRel(ctxNode, ctxPath); ok && f.statUnder(ctxNode, ctxPath, rel, true) {
			b.Context = rel
		} else {
			c.settle("context")
		}
	}
	if n, p := m.get("dockerfile"); n != nil {
		b.Dockerfile = ""
		if rel, ok := f.dirRel(n, p); ok {
			b.Dockerfile = rel
		}
		c.settle("dockerfile")
		if b.Context != "" && b.Dockerfile != "" {
			f.statUnder(n, p, path.Join(b.Context, b.Dockerfile), false)
		}
	} else if b.Context != "" {
		f.statUnder(ctxNode, ctxPath, path.Join(b.Context, b.Dockerfile), false)
	}
	if b.Context != "" {
		if f.existsUnder(path.Join(b.Context, ".dockerignore")) {
			f.errorAt(ctxNode, ctxPath, "the context has a .dockerignore, which clusterflow does not read (it sends every file of the context): move the files the image does not need out of %s", quote(b.Context))
		}
	}
	if n, p := m.get("tag"); n != nil {
		b.Tag, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("args"); n != nil {
		b.Args, _ = f.stringMap(n, p)
	}
	if n, p := m.get("target"); n != nil {
		b.Target, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("builder"); n != nil {
		b.Builder, _ = f.nonEmptyStr(n, p)
	}
	b.RegistryAuth = f.readRegistryAuth(m)
}

// existsUnder reports whether rel exists inside the playbook's directory.
func (f *file) existsUnder(rel string) bool {
	var n yaml.Node
	probe := &file{name: f.name, dir: f.dir, showDir: f.showDir, r: newReport()}
	return probe.statUnder(&n, "", rel, false)
}

// Normalize checks a buildImage step's settings and applies the default
// Dockerfile name.
func (b *BuildImageStep) Normalize(sc Scope) Problems {
	var ps Problems
	ps.workerDir(b.Dir)
	if b.Context == "" {
		ps.add("context", "is required; the build context, a directory relative to the playbook (its Dockerfile inside)")
	} else {
		ps.dirPath("context", b.Context)
	}
	if b.Dockerfile == "" {
		b.Dockerfile = "Dockerfile"
	}
	ps.dirPath("dockerfile", b.Dockerfile)
	switch {
	case b.Tag == "":
		ps.add("tag", "is required; the image's name and tag, such as web:1, as services then name it")
	case strings.Contains(b.Tag, "@"):
		ps.add("tag", "names the image built, so it cannot carry a digest, got %s", quote(b.Tag))
	case !imageTag.MatchString(b.Tag) || len(b.Tag) > 255:
		ps.add("tag", "must be an image reference in lowercase such as web:1 or registry.example.com/team/web:1, got %s", quote(b.Tag))
	}
	//workflowcheck:ignore sorted right away: the problems do not depend on map order
	for _, k := range slices.Sorted(maps.Keys(b.Args)) {
		if !buildArgName.MatchString(k) {
			ps.add(keyPath("args", k), "a build argument's name is letters, digits and _, got %s", quote(k))
		}
	}
	if b.Target != "" && !dockerName.MatchString(b.Target) {
		ps.add("target", "must be a stage name of the Dockerfile, got %s", quote(b.Target))
	}
	if b.Builder != "" {
		sc.stepRef(&ps, "builder", []string{b.Builder})
	}
	if b.RegistryAuth != nil {
		ps.under("registryAuth", b.RegistryAuth.Normalize())
	}
	return ps
}
