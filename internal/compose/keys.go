package compose

import (
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/tree"
)

// supportedKeys are the Compose attributes a stack may use: what the converter
// maps onto swarm objects (or what compose-go resolves away before conversion:
// include, extends, env_file, label_file). Every other attribute of the Compose
// Specification is refused with its line, not ignored the way `docker stack
// deploy` ignores many (docker/cli cli/compose/types UnsupportedProperties,
// DeprecatedProperties and ForbiddenProperties, and everything its
// cli/compose/convert never reads). Patterns use compose-go's tree.Path form:
// "*" for any mapping key, "[]" for a list item.
var supportedKeys = []string{
	"version", "name", "x-*",
	"include", "include.[].path", "include.[].env_file", "include.[].project_directory",

	"services", "services.*",
	"services.*.image", "services.*.command", "services.*.entrypoint", "services.*.working_dir",
	"services.*.user", "services.*.hostname", "services.*.init", "services.*.read_only",
	"services.*.tty", "services.*.stdin_open", "services.*.stop_signal", "services.*.stop_grace_period",
	"services.*.environment", "services.*.environment.*", "services.*.env_file",
	"services.*.env_file.[].path", "services.*.env_file.[].required", "services.*.env_file.[].format",
	"services.*.labels", "services.*.labels.*", "services.*.label_file",
	"services.*.extends", "services.*.extends.file", "services.*.extends.service",
	"services.*.extra_hosts", "services.*.extra_hosts.*", "services.*.dns", "services.*.dns_search", "services.*.dns_opt",
	"services.*.cap_add", "services.*.cap_drop", "services.*.sysctls", "services.*.sysctls.*",
	"services.*.ulimits", "services.*.ulimits.*", "services.*.ulimits.*.soft", "services.*.ulimits.*.hard",
	"services.*.oom_score_adj", "services.*.isolation", "services.*.restart",
	"services.*.logging", "services.*.logging.driver", "services.*.logging.options", "services.*.logging.options.*",
	"services.*.healthcheck", "services.*.healthcheck.test", "services.*.healthcheck.interval",
	"services.*.healthcheck.timeout", "services.*.healthcheck.retries", "services.*.healthcheck.start_period",
	"services.*.healthcheck.start_interval", "services.*.healthcheck.disable",
	"services.*.ports", "services.*.ports.[].target", "services.*.ports.[].published",
	"services.*.ports.[].protocol", "services.*.ports.[].mode", "services.*.ports.[].name",
	"services.*.networks", "services.*.networks.*", "services.*.networks.*.aliases",
	"services.*.networks.*.driver_opts", "services.*.networks.*.driver_opts.*",
	"services.*.networks.*.use_service_name_alias",
	"services.*.volumes", "services.*.volumes.[].type", "services.*.volumes.[].source",
	"services.*.volumes.[].target", "services.*.volumes.[].read_only", "services.*.volumes.[].consistency",
	"services.*.volumes.[].bind", "services.*.volumes.[].bind.propagation",
	"services.*.volumes.[].volume", "services.*.volumes.[].volume.nocopy", "services.*.volumes.[].volume.subpath",
	"services.*.volumes.[].tmpfs", "services.*.volumes.[].tmpfs.size", "services.*.volumes.[].tmpfs.mode",
	"services.*.volumes.[].image", "services.*.volumes.[].image.subpath",
	"services.*.secrets", "services.*.secrets.[].source", "services.*.secrets.[].target",
	"services.*.secrets.[].uid", "services.*.secrets.[].gid", "services.*.secrets.[].mode",
	"services.*.configs", "services.*.configs.[].source", "services.*.configs.[].target",
	"services.*.configs.[].uid", "services.*.configs.[].gid", "services.*.configs.[].mode",
	"services.*.deploy", "services.*.deploy.mode", "services.*.deploy.replicas", "services.*.deploy.endpoint_mode",
	"services.*.deploy.labels", "services.*.deploy.labels.*",
	"services.*.deploy.placement", "services.*.deploy.placement.constraints",
	"services.*.deploy.placement.preferences", "services.*.deploy.placement.preferences.[].spread",
	"services.*.deploy.placement.max_replicas_per_node",
	"services.*.deploy.resources", "services.*.deploy.resources.limits",
	"services.*.deploy.resources.limits.cpus", "services.*.deploy.resources.limits.memory",
	"services.*.deploy.resources.limits.pids", "services.*.deploy.resources.reservations",
	"services.*.deploy.resources.reservations.cpus", "services.*.deploy.resources.reservations.memory",
	"services.*.deploy.resources.reservations.generic_resources",
	"services.*.deploy.resources.reservations.generic_resources.[].discrete_resource_spec",
	"services.*.deploy.resources.reservations.generic_resources.[].discrete_resource_spec.kind",
	"services.*.deploy.resources.reservations.generic_resources.[].discrete_resource_spec.value",
	"services.*.deploy.restart_policy", "services.*.deploy.restart_policy.condition",
	"services.*.deploy.restart_policy.delay", "services.*.deploy.restart_policy.max_attempts",
	"services.*.deploy.restart_policy.window",

	"networks", "networks.*", "networks.*.name", "networks.*.driver", "networks.*.driver_opts",
	"networks.*.driver_opts.*", "networks.*.attachable", "networks.*.internal", "networks.*.external",
	"networks.*.labels", "networks.*.labels.*", "networks.*.enable_ipv4", "networks.*.enable_ipv6",
	"networks.*.ipam", "networks.*.ipam.driver", "networks.*.ipam.options", "networks.*.ipam.options.*",
	"networks.*.ipam.config", "networks.*.ipam.config.[].subnet", "networks.*.ipam.config.[].ip_range",
	"networks.*.ipam.config.[].gateway", "networks.*.ipam.config.[].aux_addresses",
	"networks.*.ipam.config.[].aux_addresses.*",

	"volumes", "volumes.*", "volumes.*.name", "volumes.*.driver", "volumes.*.driver_opts",
	"volumes.*.driver_opts.*", "volumes.*.external", "volumes.*.labels", "volumes.*.labels.*",

	"secrets", "secrets.*", "secrets.*.name", "secrets.*.file", "secrets.*.environment",
	"secrets.*.external", "secrets.*.labels", "secrets.*.labels.*", "secrets.*.template_driver",

	"configs", "configs.*", "configs.*.name", "configs.*.file", "configs.*.environment",
	"configs.*.external", "configs.*.labels", "configs.*.labels.*", "configs.*.template_driver",
}

// updatePolicyKeys are the keys of deploy.update_config and deploy.rollback_config.
var updatePolicyKeys = []string{"parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"}

// refusedWhy says why a known Compose attribute is refused, by its last key (or
// by a longer suffix where the last key is ambiguous). The default is
// refusedDefault.
var refusedWhy = map[string]string{
	"build":                                 "swarm services run images and cannot build them: build the image (a buildImage step) and name its tag in image",
	"depends_on":                            "swarm starts a stack's services in no order (docker stack deploy ignores depends_on): let the service retry until what it needs answers",
	"profiles":                              "a stack deploys every service; profiles only choose services for docker compose up",
	"container_name":                        "swarm names each task's container itself",
	"links":                                 "services of a stack reach each other by service name on their networks",
	"external_links":                        "services of a stack reach each other by service name on their networks",
	"network_mode":                          "swarm tasks attach to overlay networks: use networks",
	"privileged":                            "swarm services cannot run privileged containers",
	"devices":                               "swarm services cannot map host devices",
	"scale":                                 "use deploy.replicas",
	"expose":                                "services on the same network reach each other on any port (docker stack deploy ignores expose)",
	"volumes_from":                          "define the volume in the top-level volumes and mount it in each service",
	"volume_driver":                         "set the driver on the top-level volume",
	"cpus":                                  "set deploy.resources.limits.cpus",
	"cpu_shares":                            "set deploy.resources",
	"cpu_quota":                             "set deploy.resources",
	"cpu_period":                            "set deploy.resources",
	"cpuset":                                "set deploy.resources",
	"mem_limit":                             "set deploy.resources.limits.memory",
	"mem_reservation":                       "set deploy.resources.reservations.memory",
	"memswap_limit":                         "swarm services have no swap limit",
	"pids_limit":                            "set deploy.resources.limits.pids",
	"tmpfs":                                 "mount a tmpfs with a volumes entry of type: tmpfs",
	"secrets.*.driver":                      "secret driver plugins are not supported: use file or environment",
	"secrets.*.content":                     "write the secret to a file under the playbook directory and name it with file",
	"configs.*.content":                     "write the config to a file under the playbook directory and name it with file (its content must not travel with the stack)",
	"external.name":                         "write name: and external: true",
	"ports.[].host_ip":                      "swarm publishes a port on every address of the node",
	"ports.[].app_protocol":                 "swarm has no application protocol for a port",
	"networks.*.ipv4_address":               "swarm assigns each task's address",
	"networks.*.ipv6_address":               "swarm assigns each task's address",
	"deploy.resources.reservations.devices": "swarm reserves generic resources: use generic_resources",
	"bind.create_host_path":                 "swarm never creates a bind mount's host path: create it on the nodes first",
	"bind.selinux":                          "swarm bind mounts have no SELinux relabelling",
	"credential_spec":                       "credential specs are for Windows containers",
	"jobs":                                  "run a one-shot service with deploy.mode: replicated-job or global-job",
	"models":                                "models are for docker compose up",
}

const refusedDefault = "swarm services cannot honour it (docker stack deploy ignores it)"

var (
	keyTablesOnce    sync.Once
	supportedMatcher *tree.Matcher
	knownMatcher     *tree.Matcher
	// mappingParents are the paths whose value the schema allows as a mapping.
	mappingParents *tree.Matcher
)

func keyTables() {
	keyTablesOnce.Do(func() {
		var sup []tree.Path
		for _, p := range supportedKeys {
			sup = append(sup, tree.Path(p))
		}
		for _, k := range updatePolicyKeys {
			for _, which := range []string{"update_config", "rollback_config"} {
				sup = append(sup, tree.Path("services.*.deploy."+which), tree.Path("services.*.deploy."+which+"."+k))
			}
		}
		supportedMatcher = tree.NewMatcher(sup...)
		knownMatcher = tree.NewMatcher(schema.AttributePaths()...)
		var parents []tree.Path
		for _, p := range schema.AttributePaths() {
			if p.Last() != tree.PathMatchList {
				parents = append(parents, p.Parent())
			}
		}
		mappingParents = tree.NewMatcher(append(parents, "")...)
	})
}

// takesMapping reports whether the schema allows a mapping at p: where it does
// not (ports: {http: 80}), the keys are not checked one by one, and the
// schema's "must be a list" is the message.
func takesMapping(p tree.Path) bool {
	keyTables()
	return p == "" || mappingParents.Matches(p)
}

// keyStatus says whether a mapping key at pattern p (tree.Path form) is
// supported; when not, the message says why.
func keyStatus(p tree.Path, key string) (ok bool, msg string) {
	keyTables()
	if strings.HasPrefix(key, "x-") {
		return true, ""
	}
	if supportedMatcher.Matches(p) || supportedMatcher.MayContain(p) {
		return true, ""
	}
	if !knownMatcher.Matches(p) && !knownMatcher.MayContain(p) {
		return false, "unknown key: the Compose Specification has no such attribute"
	}
	// the longest suffix that names the key wins: deploy.resources.reservations.devices
	// over devices
	s, why, best := string(p), refusedDefault, 0
	for suffix, w := range refusedWhy {
		if len(suffix) > best && suffixMatches(s, suffix) {
			why, best = w, len(suffix)
		}
	}
	return false, "not supported in a swarm stack: " + why
}

// suffixMatches reports whether the last parts of path p match pattern suffix
// ("*" and "[]" as in tree.Path).
func suffixMatches(p, suffix string) bool {
	parts, want := strings.Split(p, "."), strings.Split(suffix, ".")
	if len(want) > len(parts) {
		return false
	}
	return tree.NewPath(parts[len(parts)-len(want):]...).Matches(tree.Path(suffix))
}
