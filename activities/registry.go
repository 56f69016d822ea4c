package activities

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/compose"
	"github.com/clusterflow/clusterflow/playbooks"
)

// This file turns a step's registryAuth (a reference to a password) into what the
// engine takes, the X-Registry-Auth header that `docker service create
// --with-registry-auth` sends, and pins an image tag to its digest. The password
// is read when it is needed and lives in the activity's memory only: it is never a
// result, a heartbeat, a log line or part of an error.

// maxPasswordSize bounds a password file.
const maxPasswordSize = 64 << 10

// encodedAuth is the header value for a, or "" without credentials.
func (s *Swarm) encodedAuth(dir string, a *playbooks.RegistryAuth) (string, error) {
	if a == nil {
		return "", nil
	}
	cfg, err := s.authConfig(dir, a)
	if err != nil {
		return "", err
	}
	enc, err := registry.EncodeAuthConfig(cfg)
	if err != nil {
		return "", invalidInput("registryAuth: the credentials cannot be encoded")
	}
	return enc, nil
}

// authConfig reads a's password and returns the credentials.
func (s *Swarm) authConfig(dir string, a *playbooks.RegistryAuth) (registry.AuthConfig, error) {
	if ps := a.Normalize(); len(ps) > 0 {
		return registry.AuthConfig{}, invalidInput("registryAuth: " + ps.Error())
	}
	var password string
	switch {
	case a.PasswordEnv != "":
		v, ok := s.env(a.PasswordEnv)
		if !ok {
			return registry.AuthConfig{}, invalidInput(fmt.Sprintf("registryAuth.passwordEnv: environment variable %s is not set on the worker", a.PasswordEnv))
		}
		password = v
	default:
		d, err := openPlaybookDir(s.rem.files(), dir)
		if err != nil {
			return registry.AuthConfig{}, err
		}
		defer d.Close()
		data, err := d.readSmall(a.PasswordFile, maxPasswordSize)
		if err != nil {
			return registry.AuthConfig{}, err
		}
		password = strings.TrimRight(string(data), "\r\n")
	}
	return registry.AuthConfig{Username: a.Username, Password: password, ServerAddress: a.Server}, nil
}

// pinDigest resolves image's tag to its digest through the engine (which asks the
// registry), as `docker service update` does with --with-registry-auth: image
// becomes NAME:TAG@sha256:..., so an update of the same tag rolls out. An image
// pinned already is left as it is.
func pinDigest(ctx context.Context, m remote.Host, cli *client.Client, image, auth string) (string, error) {
	if strings.Contains(image, "@") {
		return image, nil
	}
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	d, err := cli.DistributionInspect(actx, image, auth)
	if err != nil {
		return "", serviceSpecRefused(m, "could not resolve %s to a digest through the registry: %s", image, engineMessage(err))
	}
	return image + "@" + d.Descriptor.Digest.String(), nil
}

// osEnv is the worker's environment, where secrets, configs and registry
// passwords may come from.
var osEnv compose.LookupEnv = os.LookupEnv
