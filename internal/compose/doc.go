// Package compose reads swarm stacks from Compose Specification files and
// converts them to swarm objects, as `docker stack deploy` does, for the
// deployStack step kind. It is a library: no Temporal, SSH or engine calls.
// Files are read on the worker's side; what Load returns holds names and
// references only, never the content of a secret, config, env or label file.
//
// # Loading
//
// Load(ctx, LoadOptions{Root, Files, Stack, Vars}) loads the files with
// compose-go (github.com/compose-spec/compose-go/v2, the library Docker's own
// tooling uses), merged in order as `docker stack deploy -c a -c b` merges
// them, and returns a *Stack or an ErrorList: every problem with its file
// (root-relative), line, column and field path, such as
//
//	stacks/web/compose.yaml:7:5: services.web.build: not supported in a swarm stack: swarm services run images ...
//
// Anyone who can start a workflow chooses the file names, so the files are
// hostile input:
//   - Every worker-side path they name (the Compose files, include paths,
//     project_directory and env_file, extends.file, a service's env_file and
//     label_file, a secret's or config's file) must resolve inside Root: clean,
//     relative to the file that names it, no "..", no ~, no absolute path, no
//     symbolic link that leads out (files are opened through an os.Root). The
//     message for a path out of the root is the same whether something exists
//     there or not, and no message quotes a file other than the Compose files.
//   - ${VAR} interpolation reads only Vars (the playbook's vars; compose-go's
//     COMPOSE_PROJECT_NAME too). The worker's environment and .env files are
//     never read for it, and a variable that is not set and has no default is
//     an error at its line (docker compose would write a blank).
//   - Keys swarm cannot honour are refused, with the reason, not ignored: build,
//     depends_on, profiles, container_name, links, network_mode, privileged,
//     devices, cpus, mem_limit, expose, ... (docker/cli's compose types list
//     the properties `docker stack deploy` ignores or forbids; anything its
//     convert package never reads is refused too). keys.go has the list of what
//     is supported; an attribute the Compose Specification does not define is
//     "unknown key".
//
// How: a scan (scan.go) reads every file through the confinement before
// compose-go does, with gopkg.in/yaml.v3 nodes for the lines, checks keys,
// interpolation, paths and the short port and volume syntax, and follows
// include and extends to the files they name. compose-go then runs over a
// snapshot: a fresh temporary directory holding exactly the files the scan
// read, at their root-relative paths, so it can open nothing the scan did not
// confine, nor an implicit .env. Its own errors (schema, types) are given the
// line of the field they name. One level of include only; an included file
// cannot include further files.
//
// # Conversion
//
// Services (swarm.ServiceSpec, named STACK_service, labelled
// com.docker.stack.namespace and com.docker.stack.image), overlay networks
// (driver options such as encrypted, attachable, internal, IPAM, external),
// named volumes (driver, options, labels: in the mounts), secrets and configs
// (external, or a Source: a file inside Root or an environment variable of the
// worker). Their content is not read at conversion: the caller's activity
// reads it with ReadSource when it creates the object, Digest gives its
// sha256, and VersionedName the digest-suffixed name of a rotated object.
// ResolveObjects fills in the engine IDs of a service's secret and config
// references. Network targets stay names; the caller resolves them to IDs to
// compare with the engine's spec.
//
// # Sharing the mapping with deployService
//
// ServiceSpec(ns, types.ServiceConfig, Refs) is the whole service mapping, the
// one Load uses for every service: mode (replicated, global, replicated-job,
// global-job), command and entrypoint, working dir, user, env, service and
// container labels, resources, restart policy, placement, max replicas per
// node, healthcheck, stop grace period, update and rollback config, networks
// with aliases, mounts, secrets and configs, and ports published in ingress
// (the default) or host mode as written. A deployService step builds a
// compose-go types.ServiceConfig from its own camelCase fields and calls
// ServiceSpec with the zero Namespace (names as written, no stack labels, no
// extra alias) and Refs listing the networks it names as external: every
// mapping and every check is then the same as for a stack. Errors come back as
// FieldErrors (FieldErrors(err)) whose Field is the Compose path relative to
// the service (ports[1].published, deploy.resources.limits.cpus), which the
// step maps to its own field names and lines.
//
// Differences from docker/cli, each on purpose: bad values (restart
// condition, port mode and range, CPU count, update order, file mode) are
// errors here, not the engine's later; restart: "no" is condition none (the
// CLI drops it, and swarm then restarts always); a bind mount gets
// BindOptions only when it sets a propagation; extra_hosts are sorted
// (compose-go keeps them in a map); network IPAM keeps ip_range, gateway and
// aux_addresses (the CLI keeps the subnet only); a secret's default target is
// written as the CLI writes it (the bare name).
package compose
