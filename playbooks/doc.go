// Package playbooks reads, validates and resolves clusterflow playbooks (format v1), and
// holds the example playbooks shipped with clusterflow (*.yaml in this folder; each is
// also a test fixture). Invalid playbooks used by tests live in testdata/.
//
// It is a leaf package: plain data and parsing, no Temporal, SSH or engine calls, so
// the starter, the workflows and the activities can all depend on it. It checks the
// Compose files of deployStack steps with internal/compose (which speaks Docker's API
// types but calls nothing).
//
// Load reads a playbook file and Parse reads one from memory; both return a Plan (see
// plan.go) with every default applied and every reference resolved, or an ErrorList.
//
// # Format v1
//
//	apiVersion: clusterflow.io/v1
//	kind: Playbook
//	metadata:
//	  name: hello            # required; [a-z0-9][a-z0-9-]{0,62}; names the workflow ID
//	  cluster: lab           # optional, same charset; shown in the Web UI
//	  description: text      # optional
//	spec:
//	  hostKeyPolicy: strict  # strict (default) | tofu
//	  vars: {key: value}     # strings only; given to upload templates; no secrets
//	  inventory:
//	    include: [../.clusterflow/lab/inventory.yaml]  # kind: Inventory files, relative to this file
//	    defaults:            # applied to every host below that does not set the field
//	      user: root
//	      port: 22
//	      identityFile: ~/.ssh/id_ed25519   # or useAgent: true; one of the two is required
//	      useAgent: false
//	      sudo: false
//	      jump: bastion      # name of another inventory host (one level only)
//	      knownHostsFile: ~/.ssh/known_hosts
//	    hosts:
//	      - name: master     # unique; same charset as metadata.name
//	        address: 192.168.56.101   # IP or DNS name
//	        port: 22
//	        groups: [managers]
//	  steps:
//	    - name: say hello    # unique within the playbook
//	      kind: run          # closed list: the kinds below (Kinds() lists them)
//	      hosts: all         # "all", a host or group name, or a list of them
//	      parallel: 10       # default 10; what the common fields do per kind: see below
//	      maxFailPercent: 0  # default 0: any host failing stops the run after this step
//	      timeout: 10m       # per host attempt (run, upload); default 10m
//	      attempts: 3        # tries per host on retryable errors (run, upload); default 3
//	      # kind run:
//	      command: [uname, -a]   # argv list, never a shell line
//	      creates: /path         # skip when the remote path exists
//	      unless: [test, -f, /x] # skip when this argv exits 0
//	      env: {K: V}
//	      dir: /tmp
//	      exitCodes: [0]
//	      # kind upload:
//	      src: files/motd        # relative to the playbook file
//	      template: false        # render src as a Go text/template first
//	      dest: /etc/motd        # absolute remote path
//	      mode: "0644"
//	      owner: root
//	      group: root
//	      # kind distributeKeys (the DistributeKeys workflow):
//	      clusterKey: ~/.ssh/clusterflow_ed25519  # operator's key on the worker; made on first use
//	      user: root             # whose ~/.ssh is managed; default the login user
//	      mesh: true             # every host gets its own key, trusted by all the others
//	      rotate: false          # add a new cluster key, verify it, remove the old one
//	      # kind installDocker (the InstallDocker workflow):
//	      source: distro         # distro (docker.io) | docker-repo | offline
//	      version: 20.10.24+dfsg1-1+deb12u1   # apt version pin; default the newest
//	      mirror: https://mirror.example/docker-ce/linux  # docker-repo only
//	      packages: debs/        # offline only: a directory of .deb files (SHA256SUMS checked)
//	      daemonConfig: {log-driver: json-file}  # merged into /etc/docker/daemon.json
//	      users: [deploy]        # added to the docker group
//	      # kind swarmInit (the SwarmInit workflow):
//	      managers: [master]     # among the step's hosts; the first initialises; default the first host
//	      advertiseAddr: address # "address" (inventory address) | interface (eth1) | IP[:port]; default the engine's choice
//	      dataPathAddr: eth1     # as advertiseAddr, without a port; default the same
//	      listenAddr: 0.0.0.0:2377
//	      labels: {slave01: {zone: a}}   # node labels per host of the step
//	      networks: [{name: backend, attachable: true, encrypted: true, subnet: 10.20.0.0/24, labels: {}}]
//	      # kinds promote, demote, drain, activate, removeNode (the SwarmNodes workflow,
//	      # one node at a time; timeout bounds a drain's wait for the tasks to move):
//	      manager: master        # whose engine is asked; default the first inventory host that is a manager
//	      force: true            # removeNode only: remove a node that is down
//	      # kind consulBootstrap (the ConsulBootstrap workflow):
//	      servers: managers      # hosts (among the step's) that run servers; default all of them
//	      source: file           # file (binary sent from the worker) | url (release zip) | apt
//	      binary: ../.clusterflow/lab/consul   # file only: a local path, may lie outside this folder
//	      sha256: 3f0c...        # file: of the binary; url: of the zip (64 hex digits)
//	      sha256sums: ../.clusterflow/lab/consul.SHA256SUMS  # or a SHA256SUMS file, read at load
//	      url: https://releases.hashicorp.com/consul/1.22.7/consul_1.22.7_linux_amd64.zip  # url; apt: the repository
//	      version: 1.22.7-1      # apt: version pin; otherwise for messages only
//	      datacenter: dc1        # default dc1
//	      gossipKeyFile: ~/.config/clusterflow/consul-gossip.key  # worker side, made on first use; the key never travels
//	      bindInterface: eth1    # bind to this interface's address; default the inventory address
//	      # kind rotateCA (the RotateCA workflow; timeout bounds the wait for the rotation's end):
//	      manager: master        # whose engine is asked; default the first inventory host that is a manager
//	      nodeCertExpiry: 2160h  # validity of the certificates it issues; default: unchanged
//	      rotateWorkerToken: true    # new join tokens in the same update
//	      rotateManagerToken: true
//	      caCert: ~/ca/root.pem  # an own root CA (PEM, worker side) instead of a generated one;
//	      caKey: ~/ca/root.key   # with caCert; read by the worker, never sent through Temporal
//	      # kind checkCertificates (the CheckCertificates workflow):
//	      manager: master        # as rotateCA
//	      minValidity: 720h      # least remaining validity accepted; default 720h (30 days)
//	      action: fail           # fail (default) | rotate: a rotateCA run renews every certificate
//	      nodeCertExpiry: 2160h  # action rotate only: as rotateCA
//	      # kinds deployService (create or update) and updateService (update an existing
//	      # one), the DeployService workflow; fields left out keep the service's values
//	      # (the engine's spec is built by internal/compose.ServiceSpec, as for stacks):
//	      service: web           # the swarm service's name (required)
//	      manager: master        # as rotateCA; default: the first of the step's hosts that is a manager
//	      image: web:2           # required for deployService; or {name: web:2, load: web-2.tar}
//	      mode: replicated       # replicated (default) | global | replicated-job | global-job
//	      replicas: 3            # replicated and replicated-job only
//	      env: {MODE: prod}      # lands in history: not for secrets (use secrets)
//	      entrypoint: [/bin/web] # replaces the image's ENTRYPOINT
//	      command: [--port, "80"]  # replaces the image's CMD (the arguments)
//	      workdir: /srv
//	      user: "1000:1000"
//	      labels: {team: web}    # the service's labels; containerLabels: each container's
//	      ports: ["8080:80", "5353:53/udp", {published: 9100, target: 9100, protocol: tcp, mode: host}]  # tcp (default) | udp | sctp; ingress (default) | host
//	      mounts: [{type: volume, source: data, target: /data, readOnly: false}]  # volume | bind | tmpfs
//	      networks: [backend, {name: front, aliases: [www]}]  # overlay networks that exist
//	      constraints: [node.role==worker, node.labels.zone!=b]
//	      placementPreferences: [node.labels.zone]  # spread tasks over these attributes' values
//	      maxReplicasPerNode: 1
//	      resources: {limits: {cpus: 0.5, memory: 64M, pids: 100}, reservations: {cpus: 0.1, memory: 16M}}
//	      restartPolicy: {condition: on-failure, delay: 5s, maxAttempts: 3, window: 1m}  # none | on-failure | any
//	      stopGracePeriod: 10s
//	      secrets: [db_password, {source: tls_key, target: /etc/tls/key, uid: "0", gid: "0", mode: "0400"}]
//	      configs: [{source: web_conf, target: /etc/web.conf}]   # secrets and configs that exist
//	      healthCheck: {test: [CMD, /bin/check], interval: 10s, timeout: 3s, retries: 3, startPeriod: 5s}
//	      updateConfig:          # defaults are the engine's
//	        parallelism: 1       # tasks at once; 0: all
//	        delay: 10s
//	        monitor: 5s          # failure window after each task starts
//	        failureAction: rollback  # pause (default) | continue | rollback
//	        maxFailureRatio: 0.1
//	        order: start-first   # stop-first (default) | start-first
//	      rollbackConfig: {...}  # as updateConfig; failureAction pause | continue
//	      registryAuth:          # a registry's credentials, by reference (deployStack, buildImage too)
//	        server: registry.example.com:5000
//	        username: deploy
//	        passwordEnv: REGISTRY_PASSWORD   # a variable of the worker; or passwordFile: a file in this folder
//	      # With registryAuth the image's tag is resolved to its digest before the specs are
//	      # compared (an update of the same tag rolls out) and the credentials go to the
//	      # engine as --with-registry-auth sends them; they are never in history. The step's
//	      # outcome: changed (completed), unchanged, or failed with "rolled back: <the
//	      # engine's reason>" or "update paused: <reason>". A replicated-job, global-job or
//	      # restartPolicy none service that ran to completion counts as completed.
//	      # kind deployStack (the DeployStack workflow): a stack from Compose files, as
//	      # `docker stack deploy -c FILE STACK`, every service followed to an outcome:
//	      stack: napcore         # required; the prefix of its objects (napcore_web), labelled
//	                             # com.docker.stack.namespace as docker stack ls/ps/rm expect
//	      compose: stacks/nap-core/compose.yaml  # relative to this file; or a list, merged in order
//	      manager: master        # as deployService
//	      prune: true            # remove the stack's services, secrets and configs the files no longer have
//	      rollbackOnFailure: true  # one service fails: every service the step changed goes back
//	                             # to its spec from before the step (one it created is removed)
//	      registryAuth: {...}    # as deployService
//	      # The files are checked when the playbook is loaded (starter validate), with the file,
//	      # line and field of each problem: keys swarm cannot honour (build, depends_on, ...) are
//	      # refused, ${VAR} reads spec.vars only. Secrets and configs come from files in this
//	      # folder (file:) or variables of the worker (environment:); their content never enters
//	      # history: only name, digest and users. Each is created as NAME-<12 hex of its digest>;
//	      # changed content is a new object, the services move to it, the old one is removed.
//	      # timeout bounds the wait for the services' outcome (default 10m).
//	      # kind buildImage (the BuildImage workflow): an image built on one of the step's
//	      # hosts from a build context in this folder (sent as a tar through the engine API
//	      # over SSH), then loaded into the step's other hosts (docker save | docker load):
//	      context: images/web    # a directory relative to this file; no .dockerignore
//	      dockerfile: Dockerfile # relative to context; default Dockerfile
//	      tag: clusterflow/web:1 # required; services and stacks name it
//	      args: {VERSION: "1"}   # build arguments
//	      target: runtime        # a stage of a multi-stage Dockerfile
//	      builder: master        # among the step's hosts; default the first
//	      registryAuth: {...}    # for FROM images of a registry
//	      # The context's digest (files, modes, Dockerfile, args, target) is a label of the image:
//	      # the same context is not built again, and hosts that have the image are unchanged.
//	      # kinds removeService, removeStack, removeNetwork, removeVolume (the Teardown
//	      # workflow: removeVolume on each of the step's hosts, the others through a
//	      # manager); what is absent is unchanged:
//	      service: web           # removeService: waits until its tasks are gone
//	      stack: napcore         # removeStack: its services, then its networks, secrets, configs
//	      network: backend       # removeNetwork: waits until no container uses it
//	      volume: napcore_data   # removeVolume: refused while a container uses it
//	      manager: master        # as deployService (not for removeVolume)
//	      # kind rollingNodeUpgrade (the RollingNodeUpgrade workflow): the engine of the
//	      # step's swarm nodes, managers one at a time (leader last), then workers in
//	      # batches; each node drained, upgraded, restarted, Ready, active again, and
//	      # the services converged before the next batch. timeout bounds each wait.
//	      source: offline        # as installDocker: distro | docker-repo | offline
//	      version: 20.10.24+dfsg1-1+deb12u1  # required: nodes that have it are left alone
//	      packages: ../debs      # offline; mirror, daemonConfig, users: as installDocker
//	      manager: master        # as rotateCA; default: a manager outside the batch
//	      maxUnavailable: 25%    # workers drained at once, in percent (at least one node)
//	      approval: false        # true: wait for `starter approve NAME` after each batch
//	      backup: true           # Raft state backup from the first manager before any change
//
// An inventory fragment (what `lab up` writes) is a file of its own:
//
//	apiVersion: clusterflow.io/v1
//	kind: Inventory
//	metadata: {name: lab}  # optional: name, cluster, description
//	spec:
//	  defaults: {...}   # as above; apply to this file's hosts only
//	  hosts: [...]
//
// # Common fields per kind
//
// parallel, maxFailPercent, timeout and attempts are fields of every step, but not
// every kind has a use for each: a kind that does not use one refuses it where the
// playbook writes it ("spec.steps[2].attempts: kind rotateCA does not use attempts:
// its activities retry on their own; leave it out"), and a plan sent as JSON may carry
// only its default there (Plan.CheckFieldUse; RunPlaybook refuses it under the
// workflow version field-use). maxFailPercent is the failure budget of every kind,
// over the outcomes a procedure reports per host. Per kind, what parallel,
// maxFailPercent, timeout and attempts do (fieldUses in fielduse.go; a test keeps
// these lines and README.md's table in step with it):
//
//	activate: refused: it changes one node at a time | failure budget | refused: only drain waits (for the tasks to move) | refused: its activities retry on their own
//	buildImage: hosts loading the image at once | failure budget | refused: a build and a load have bounds of their own (1h, 30m) | refused: its activities retry on their own
//	checkCertificates: refused: it reads every node's certificate at once | failure budget | action rotate: how long the rotation is followed (refused with action fail) | refused: its activities retry on their own
//	consulBootstrap: hosts at once | failure budget | refused: its activities have bounds of their own (an install up to 20m) | refused: its activities retry on their own
//	demote: refused: it changes one node at a time | failure budget | refused: only drain waits (for the tasks to move) | refused: its activities retry on their own
//	deployService: refused: the update's pace is updateConfig.parallelism | failure budget | bounds the wait for the update's outcome | refused: its activities retry on their own
//	deployStack: refused: the pace of each service is its update_config | failure budget | bounds the wait for the services' outcomes | refused: its activities retry on their own
//	distributeKeys: hosts at once in each phase | failure budget | per attempt of each host activity | tries of each host activity
//	drain: refused: it changes one node at a time | failure budget | bounds each node's wait for its tasks to move | refused: its activities retry on their own
//	installDocker: hosts at once | failure budget | refused: its activities have bounds of their own (a package install up to 20m) | refused: its activities retry on their own
//	promote: refused: it changes one node at a time | failure budget | refused: only drain waits (for the tasks to move) | refused: its activities retry on their own
//	removeNetwork: refused: it works through one manager | failure budget | bounds the wait for the network to be free | refused: its activities retry on their own
//	removeNode: refused: it changes one node at a time | failure budget | refused: only drain waits (for the tasks to move) | refused: its activities retry on their own
//	removeService: refused: it works through one manager | failure budget | bounds the wait for the service's tasks to go | refused: its activities retry on their own
//	removeStack: refused: it works through one manager | failure budget | bounds the wait for the stack's tasks to go and its networks to be free | refused: its activities retry on their own
//	removeVolume: refused: it removes the volume on every host at once | failure budget | refused: removing a volume does not wait | refused: its activities retry on their own
//	rollingNodeUpgrade: refused: the batch size is maxUnavailable | failure budget | bounds each wait: tasks moved off a node, node Ready, services converged | refused: its activities retry on their own
//	rotateCA: refused: the swarm renews every node's certificate itself | failure budget | how long the rotation is followed (it goes on after that) | refused: its activities retry on their own
//	run: hosts at once | failure budget | per host attempt | tries per host on retryable errors
//	swarmInit: refused: it initialises the first manager, then joins the other hosts together | failure budget | refused: its activities have bounds of their own | refused: its activities retry on their own
//	updateService: refused: the update's pace is updateConfig.parallelism | failure budget | bounds the wait for the update's outcome | refused: its activities retry on their own
//	upload: hosts at once | failure budget | per host attempt | tries per host on retryable errors
//
// Unknown fields and unknown step kinds are errors. Every error names
// file:line:column, the field path and what is wrong, and nothing starts.
//
// # Rules
//
// Values. Strings may be written plain or quoted; a plain 10 or true where a string is
// expected is taken as written, so [sleep, 10] needs no quotes, but null (~ or an empty
// value) is never a string. Integers (port, parallel, maxFailPercent, attempts,
// exitCodes) are written in decimal without quotes, leading zeros or underscores.
// Durations are Go duration strings with a unit: "90s", "10m", "1h30m" (1s to 24h).
// Booleans are true or false.
//
// Modes. A quoted mode is read as octal: "0644", "644", "0o644", "04755". An unquoted
// mode is accepted only when it is unambiguously octal, written with a leading 0 or 0o
// (0644, 0o644); an unquoted 644 or 420 is refused, since it could be meant as octal
// or decimal. Modes are permission bits only: at most 07777, and not 0. The default
// is 0644.
//
// Inventory. Plan.Hosts, and the hosts of every step, are in inventory order: the
// hosts of each included file in the order of spec.inventory.include, then
// spec.inventory.hosts. Host names are unique across all files; a duplicate is
// reported at its second occurrence. Defaults apply per file: a playbook's
// spec.inventory.defaults to its own hosts, an inventory file's spec.defaults to the
// hosts of that file. A jump set by defaults is not applied to the host it names, so
// defaults.jump: bastion sends every host of the file through bastion except bastion.
// A jump host may not have a jump itself. Addresses are an IPv4 or IPv6 address
// (without brackets) or a DNS name; no URLs, ports or users. Group names use the host
// name charset and may not equal a host name; "all" is neither a host nor a group name.
// At most 1000 hosts per playbook, included files counted.
//
// Local paths (include, identityFile, knownHostsFile) may start with ~/ for the home
// directory of the user running clusterflow; relative paths are relative to the file
// that writes them. They are stored absolute. knownHostsFile defaults to
// ~/.ssh/known_hosts. There is no setting that turns host key checking off.
//
// Steps. At most 200. name is required, unique, one line of at most 100 characters.
// hosts is required. run: command and unless are argv lists of non-empty strings; a
// shell, when needed, is asked for explicitly: [sh, -c, "..."]. creates and dir are
// absolute remote paths; env keys are [A-Za-z_][A-Za-z0-9_]* (as are spec.vars keys);
// exitCodes are 0..255, default [0]. upload: src is a regular file (a template: at most
// 64 MiB; a plain file is streamed) inside the playbook's directory (also after following symbolic links), so that a
// playbook sent inline cannot copy other files of the worker; dest is an absolute path
// of a file (not ending in /); owner and group are user or group names, or numeric ids.
//
// Names on the hosts. A user name (a host's user, distributeKeys.user,
// installDocker.users) is letters, digits, '_', '.' and '-', starting with a letter
// or '_', at most 32 characters, optionally ending in $ (internal/rules); an upload's
// owner and group are such a name or a numeric id. Package versions (installDocker,
// rollingNodeUpgrade, consulBootstrap) start with a digit.
//
// Where the rules live. Each step type checks itself in its Normalize method (next to
// its reader, one file per kind), which also applies the defaults a zero value stands
// for. The parser calls it once a step is read and reports each problem at its field;
// the workflows call the same methods (Plan.Normalize, or the step type's) for input
// that arrives as JSON without the parser, so a plan or a procedure input started from
// the Web UI meets the same rules.
//
// Templates (template: true) are Go text/template with its built-in functions only;
// a missing key is an error. They see TemplateData: {{.Host.Name}}, {{.Host.Address}},
// {{.Host.Groups}} of the target host and {{.Vars.key}}, nothing else. Loading parses
// each template and renders it for every target host (output discarded), so a wrong
// field or an undefined var is reported at the src line before anything runs.
// Templates whose loops could run long without writing are refused: at most 5 million
// actions and text pieces may run, a range multiplying what it holds by its length
// ({{range N}} over an integer, a range over data counted as 1000), and templates may
// not call themselves. A rendering (on trial, and by UploadFile) stops past 64 MiB of
// output or 2 seconds.
//
// Limits on input. Playbook and inventory files are at most 1 MiB and hold exactly one
// YAML document. YAML anchors and aliases (&a, *a), merge keys (<<) and explicit tags
// (!!str) are refused, and nesting is capped at 32 levels. Load and Parse collect up to
// 1000 errors; ErrorList prints the first 20. A plan is at most 4000 host-steps (the
// hosts of every step added up) and 512 KiB as JSON: it travels as one Temporal
// payload, and each host-step is one entry of the run's progress (limits.go). The
// parser reports a plan over them at the step where the count is crossed, or for the
// file; Plan.Normalize applies the same limits to a plan sent as JSON.
package playbooks
