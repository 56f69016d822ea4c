package compose

import (
	"cmp"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
)

// mounts converts a service's volumes as docker/cli's convert.Volumes does: a
// named volume is the stack's (STACK_name, with its driver and labels, unless
// external), a bind mount names a path on the node, a tmpfs has no source.
func mounts(ns Namespace, vols []types.ServiceVolumeConfig, stack types.Volumes, fe *fieldErrors) []mount.Mount {
	var out []mount.Mount
	for i, v := range vols {
		field := fmt.Sprintf("volumes[%d]", i)
		m := mount.Mount{Type: mount.Type(v.Type), Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly,
			Consistency: mount.Consistency(v.Consistency)}
		if !path.IsAbs(v.Target) {
			fe.add(field+".target", "must be an absolute path inside the container, got %s", quote(v.Target))
		}
		other := func(kinds ...string) {
			opts := map[string]bool{"volume": v.Volume != nil, "bind": v.Bind != nil, "tmpfs": v.Tmpfs != nil, "image": v.Image != nil}
			for _, k := range kinds {
				if opts[k] {
					fe.add(field+"."+k, "%s options do not go with a mount of type %s", k, cmp.Or(v.Type, "volume"))
				}
			}
		}
		switch v.Type {
		case types.VolumeTypeVolume, "":
			m.Type = mount.TypeVolume
			other("bind", "tmpfs", "image")
			if v.Source == "" {
				break // anonymous
			}
			vol, ok := stack[v.Source]
			if !ok {
				fe.add(field+".source", "undefined volume %s: declare it in the top-level volumes", quote(v.Source))
				continue
			}
			m.Source = ns.objectName(v.Source, vol.Name)
			m.VolumeOptions = &mount.VolumeOptions{}
			if v.Volume != nil {
				m.VolumeOptions.NoCopy, m.VolumeOptions.Subpath = v.Volume.NoCopy, v.Volume.Subpath
			}
			if !vol.External {
				m.VolumeOptions.Labels = ns.Labels(vol.Labels)
				if vol.Driver != "" || vol.DriverOpts != nil {
					m.VolumeOptions.DriverConfig = &mount.Driver{Name: vol.Driver, Options: nilIfEmpty(vol.DriverOpts)}
				}
			}
		case types.VolumeTypeBind:
			other("volume", "tmpfs", "image")
			if !path.IsAbs(v.Source) {
				fe.add(field+".source", "a bind mount's source is an absolute path on the node, got %s", quote(v.Source))
			}
			if v.Bind != nil && v.Bind.Propagation != "" {
				m.BindOptions = &mount.BindOptions{Propagation: mount.Propagation(v.Bind.Propagation)}
			}
		case types.VolumeTypeTmpfs:
			other("volume", "bind", "image")
			if v.Source != "" {
				fe.add(field+".source", "a tmpfs mount has no source")
			}
			if t := v.Tmpfs; t != nil && (t.Size != 0 || t.Mode != 0) {
				if t.Size < 0 {
					fe.add(field+".tmpfs.size", "must not be negative")
				}
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(t.Size), Mode: os.FileMode(t.Mode)}
			}
		case types.VolumeTypeImage:
			other("volume", "bind", "tmpfs")
			if v.Source == "" {
				fe.add(field+".source", "an image mount names the image")
			}
			if v.Image != nil && v.Image.SubPath != "" {
				m.ImageOptions = &mount.ImageOptions{Subpath: v.Image.SubPath}
			}
		default:
			fe.add(field+".type", "must be volume, bind, tmpfs or image, got %s", quote(v.Type))
			continue
		}
		out = append(out, m)
	}
	return out
}

// Defaults of a secret or config reference, as docker/cli sets them.
const (
	defaultRefUID  = "0"
	defaultRefMode = 0o444
	secretsDir     = "/run/secrets/"
)

// fileTarget is the file a secret or config appears as in the container. It is
// written as docker/cli writes it: the bare name when it is the default place
// (compose-go spells the defaults /run/secrets/NAME and /NAME).
func fileTarget(r types.FileReferenceConfig, defaultDir, field string, fe *fieldErrors) swarm.SecretReferenceFileTarget {
	t := r.Target
	if t == "" || t == defaultDir+r.Source {
		t = r.Source
	}
	mode := uint32(defaultRefMode)
	if r.Mode != nil {
		if *r.Mode < 0 || *r.Mode > 0o777 {
			fe.add(field+".mode", "must be a file mode between 0 and 0777 (write it in octal, 0440), got %d", *r.Mode)
		}
		mode = uint32(*r.Mode)
	}
	return swarm.SecretReferenceFileTarget{Name: t, UID: cmp.Or(r.UID, defaultRefUID), GID: cmp.Or(r.GID, defaultRefUID),
		Mode: os.FileMode(mode)}
}

// objectRef is a secret or config reference of a service, converted.
type objectRef struct {
	name   string
	target swarm.SecretReferenceFileTarget
}

// objectRefs converts a service's secret or config references (kind names
// them in errors), sorted by object name as docker/cli sorts them so that an
// unchanged service is not updated for their order. names maps the stack's
// keys to the object names the file gives (empty: STACK_key).
func objectRefs(ns Namespace, refs []types.FileReferenceConfig, names map[string]string, kind, defaultDir string, fe *fieldErrors) []objectRef {
	var out []objectRef
	for i, r := range refs {
		field := fmt.Sprintf("%ss[%d]", kind, i)
		name, ok := names[r.Source]
		if !ok {
			fe.add(field, "undefined %s %s: declare it in the top-level %ss", kind, quote(r.Source), kind)
			continue
		}
		out = append(out, objectRef{ns.objectName(r.Source, name), fileTarget(r, defaultDir, field, fe)})
	}
	slices.SortStableFunc(out, func(a, b objectRef) int { return cmp.Compare(a.name, b.name) })
	return out
}

// fileRefs are a service's secret or config references as the type they share.
func fileRefs[R types.ServiceSecretConfig | types.ServiceConfigObjConfig](refs []R) []types.FileReferenceConfig {
	var out []types.FileReferenceConfig
	for _, r := range refs {
		out = append(out, types.FileReferenceConfig(r))
	}
	return out
}

// objectNames are the names the file gives the stack's secrets or configs, by key.
func objectNames[O types.SecretConfig | types.ConfigObjConfig](objs map[string]O) map[string]string {
	names := map[string]string{}
	for k, v := range fileObjects(objs) {
		names[k] = v.Name
	}
	return names
}

// fileObjects are the stack's secrets or configs as the type they share.
func fileObjects[O types.SecretConfig | types.ConfigObjConfig](objs map[string]O) map[string]types.FileObjectConfig {
	out := map[string]types.FileObjectConfig{}
	for k, v := range objs {
		out[k] = types.FileObjectConfig(v)
	}
	return out
}

func secretRefs(ns Namespace, refs []types.ServiceSecretConfig, secrets types.Secrets, fe *fieldErrors) []*swarm.SecretReference {
	var out []*swarm.SecretReference
	for _, r := range objectRefs(ns, fileRefs(refs), objectNames(secrets), "secret", secretsDir, fe) {
		out = append(out, &swarm.SecretReference{File: &r.target, SecretName: r.name})
	}
	return out
}

func configRefs(ns Namespace, refs []types.ServiceConfigObjConfig, configs types.Configs, fe *fieldErrors) []*swarm.ConfigReference {
	var out []*swarm.ConfigReference
	for _, r := range objectRefs(ns, fileRefs(refs), objectNames(configs), "config", "/", fe) {
		t := swarm.ConfigReferenceFileTarget(r.target)
		out = append(out, &swarm.ConfigReference{File: &t, ConfigName: r.name})
	}
	return out
}

// ObjectID is a secret or config as the engine has it.
type ObjectID struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// ResolveObjects gives the secret and config references of spec their engine
// IDs, by the names ServiceSpec wrote; the engine's object may carry another
// name (a rotated secret, named with its digest). Unknown names are an error.
func ResolveObjects(spec *swarm.ServiceSpec, secrets, configs map[string]ObjectID) error {
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return nil
	}
	// new references: the old ones may be shared with the spec ServiceSpec returned
	c := *cs
	c.Secrets, c.Configs = nil, nil
	var missing []string
	resolve := func(kind, name string, ids map[string]ObjectID) (string, string) {
		id, ok := ids[name]
		if !ok {
			missing = append(missing, kind+" "+name)
			return "", name
		}
		return id.ID, id.Name
	}
	for _, r := range cs.Secrets {
		ref := *r
		ref.SecretID, ref.SecretName = resolve("secret", r.SecretName, secrets)
		c.Secrets = append(c.Secrets, &ref)
	}
	for _, r := range cs.Configs {
		ref := *r
		ref.ConfigID, ref.ConfigName = resolve("config", r.ConfigName, configs)
		c.Configs = append(c.Configs, &ref)
	}
	spec.TaskTemplate.ContainerSpec = &c
	if len(missing) > 0 {
		return fmt.Errorf("service %s: no engine object for %s", spec.Name, strings.Join(missing, ", "))
	}
	return nil
}
