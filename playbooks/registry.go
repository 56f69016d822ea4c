package playbooks

import (
	"regexp"

	"github.com/clusterflow/clusterflow/internal/rules"
)

// RegistryAuth names a registry's credentials by reference (deployService,
// deployStack, buildImage). The password is read on the worker when the engine
// needs it, from a file inside the playbook's directory or from an environment
// variable of the worker, and handed to the engine as `docker ...
// --with-registry-auth` does (the X-Registry-Auth header); it is never part of a
// step, a result, a log line or the workflow's history. With it, a service's
// image tag is resolved to its digest before the spec is compared, so an update
// of the same tag rolls out.
type RegistryAuth struct {
	// Server is the registry's host[:port], as image references name it.
	Server   string `json:"server"`
	Username string `json:"username"`
	// PasswordFile is relative to the step's dir (the playbook's directory).
	PasswordFile string `json:"passwordFile,omitempty"`
	// PasswordEnv names an environment variable of the worker.
	PasswordEnv string `json:"passwordEnv,omitempty"`
}

// registryServer is a registry host with an optional port: no scheme, no path.
var registryServer = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$`)

// readRegistryAuth reads registryAuth: {server, username, passwordFile | passwordEnv}.
func (f *file) readRegistryAuth(m *fields) *RegistryAuth {
	n, p := m.get("registryAuth")
	if n == nil {
		return nil
	}
	rm := f.mapping(n, p)
	if rm == nil {
		return nil
	}
	f.checkKeys(rm, "server", "username", "passwordFile", "passwordEnv")
	a := &RegistryAuth{}
	for _, s := range []struct {
		key string
		to  *string
	}{{"server", &a.Server}, {"username", &a.Username}, {"passwordEnv", &a.PasswordEnv}} {
		if v, vp := rm.get(s.key); v != nil {
			*s.to, _ = f.nonEmptyStr(v, vp)
		}
	}
	if v, vp := rm.get("passwordFile"); v != nil {
		if rel, ok := f.dirRel(v, vp); ok && f.statUnder(v, vp, rel, false) {
			a.PasswordFile = rel
		}
	}
	return a
}

// Normalize checks registry credentials: a server, a user, and exactly one
// reference to the password.
func (a *RegistryAuth) Normalize() Problems {
	var ps Problems
	switch {
	case a.Server == "":
		ps.add("server", "is required; the registry's host[:port], such as registry.example.com:5000")
	case !registryServer.MatchString(a.Server):
		ps.add("server", "must be a registry host[:port] without a scheme or path, such as registry.example.com:5000, got %s", quote(a.Server))
	}
	if a.Username == "" {
		ps.add("username", "is required")
	}
	switch {
	case a.PasswordFile == "" && a.PasswordEnv == "":
		ps.add("", "needs passwordFile (a file in the playbook's directory) or passwordEnv (a variable of the worker): the password itself is never written in a playbook")
	case a.PasswordFile != "" && a.PasswordEnv != "":
		ps.add("passwordEnv", "give passwordFile or passwordEnv, not both")
	case a.PasswordFile != "":
		ps.dirPath("passwordFile", a.PasswordFile)
	case !rules.EnvName(a.PasswordEnv):
		ps.add("passwordEnv", "must be an environment variable name (letters, digits and _, not starting with a digit), got %s", quote(a.PasswordEnv))
	}
	return ps
}
