package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"

	"github.com/spf13/cobra"
)

// exitStatusError carries the exit status of a command `lab` ran for the user (lab ssh),
// so that `lab` exits with it and prints nothing more.
type exitStatusError struct{ code int }

func (e exitStatusError) Error() string { return "exit status " + strconv.Itoa(e.code) }

// run is the whole program: it parses args (without the program name) and runs the
// subcommand, writing to stdout and stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// exitSubnetInUse is the exit status of `lab up` when the lab's subnet overlaps
// another network: scripts that pick lab names (the tests) try another name.
const exitSubnetInUse = 3

// labFlags is what every subcommand reads from the root command: the lab's name.
type labFlags struct {
	name string
}

// spec resolves the lab: --name, else $CLUSTERFLOW_LAB, else the default.
func (f *labFlags) spec(cmd *cobra.Command) (labSpec, error) {
	name := f.name
	if !cmd.Flags().Changed("name") {
		if env := os.Getenv(envLabName); env != "" {
			name = env
		}
	}
	return newLabSpec(name)
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	flags := &labFlags{}
	def, _ := newLabSpec(defaultLabName)
	root := &cobra.Command{
		Use:   "lab",
		Short: "A local cluster of SSH hosts (Docker containers) to run clusterflow playbooks against",
		Long: `lab runs a local virtual cluster: master, slave01, slave02, ... as Debian bookworm
containers on a private bridge network, each with its own sshd and host key, reachable
as root with the lab key, and able to run its own Docker engine later.

Labs have names (--name, or $` + envLabName + `; default ` + defaultLabName + `), and several
live side by side: a lab's network is its name, its containers and volumes start with
it, and its subnet comes from it (the default lab's is ` + def.Subnet.String() + `, any other's a
/24 of ` + labSubnets + ` picked by the name's hash; ` + "`lab up`" + ` refuses one that
overlaps another network). Every command acts on the named lab only.

State: .clusterflow/lab/ under the current directory (labs/NAME/ instead of lab/ for a
lab not named ` + defaultLabName + `), or the same under $CLUSTERFLOW_STATE_DIR.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	root.PersistentFlags().StringVar(&flags.name, "name", defaultLabName, "the lab's name (default: $"+envLabName+", else "+defaultLabName+")")
	root.AddCommand(newUpCommand(flags), newDownCommand(flags), newStatusCommand(flags), newSSHCommand(flags),
		newImagesCommand(flags), newRepoCommand(flags), newConsulCommand(flags), newListCommand())
	return root
}

// openLab resolves the lab and its state paths and connects to the engine.
func openLab(cmd *cobra.Command, flags *labFlags) (*lab, func(), error) {
	spec, err := flags.spec(cmd)
	if err != nil {
		return nil, nil, err
	}
	p, err := spec.statePaths()
	if err != nil {
		return nil, nil, err
	}
	cli, err := connectDocker(cmd.Context())
	if err != nil {
		return nil, nil, err
	}
	return &lab{cli: cli, spec: spec, paths: p, out: cmd.OutOrStdout()}, func() { cli.Close() }, nil
}

// withLab runs fn on the opened lab and closes it afterwards.
func withLab(flags *labFlags, fn func(cmd *cobra.Command, l *lab, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		l, done, err := openLab(cmd, flags)
		if err != nil {
			return err
		}
		defer done()
		return fn(cmd, l, args)
	}
}

func newUpCommand(flags *labFlags) *cobra.Command {
	opts := upOptions{Nodes: defaultNodes}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create or resume the lab and write its key, known_hosts and inventory",
		Long: `up builds the images when needed (debian:bookworm with debootstrap where no registry is
reachable, then clusterflow-node:bookworm), creates the network and the node containers,
installs the lab key, reads every node's host key through the engine, writes
known_hosts and inventory.yaml, and waits until every node accepts an SSH login with
strict host key checking. Running it again changes nothing; it never removes a node.
A lab whose subnet overlaps another network is refused (exit status 3): choose
another --name.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Nodes < 1 || opts.Nodes > maxNodes {
				return fmt.Errorf("--nodes must be between 1 and %d, not %d", maxNodes, opts.Nodes)
			}
			return withLab(flags, func(cmd *cobra.Command, l *lab, _ []string) error {
				return up(cmd.Context(), l, opts)
			})(cmd, args)
		},
	}
	cmd.Flags().IntVar(&opts.Nodes, "nodes", defaultNodes, fmt.Sprintf("number of nodes, 1 to %d: master, slave01, ...", maxNodes))
	cmd.Flags().BoolVar(&opts.Prebaked, "prebaked", false, "use "+prebakedImage+" (docker.io installed, engine not started)")
	cmd.Flags().BoolVarP(&opts.Verbose, "verbose", "v", false, "show image build output")
	return cmd
}

func newDownCommand(flags *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove every container, volume and network of the lab (keeps images and the lab key)",
		Long: `down removes the containers, volumes and network that carry the label
` + labelLab + `=NAME of this lab (other labs stay as they are), and its known_hosts and
inventory.yaml. It keeps the images, the caches and the lab key pair.`,
		Args: cobra.NoArgs,
		RunE: withLab(flags, func(cmd *cobra.Command, l *lab, _ []string) error {
			return down(cmd.Context(), l)
		}),
	}
}

func newStatusCommand(flags *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show every node of the lab: container state, address, SSH login, Docker engine",
		Args:  cobra.NoArgs,
		RunE: withLab(flags, func(cmd *cobra.Command, l *lab, _ []string) error {
			rows, err := status(cmd.Context(), l)
			if err != nil {
				return err
			}
			printStatus(cmd.OutOrStdout(), l, rows)
			return nil
		}),
	}
}

func newImagesCommand(flags *labFlags) *cobra.Command {
	var prebaked, rebuild, verbose bool
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Build the lab images when missing or out of date",
		Long: `images makes sure debian:bookworm exists (made with debootstrap when missing) and
builds ` + nodeImage + ` from lab/node.Dockerfile, and with --prebaked also
` + prebakedImage + `, then the lab repository's package cache when missing (as
` + "`lab repo`" + `). An image is rebuilt only when its build files changed (label
` + labelContextHash + `) or with --rebuild. It also creates the lab key pair
in the lab's state directory (needed before docker-compose up, which mounts it).`,
		Args: cobra.NoArgs,
		RunE: withLab(flags, func(cmd *cobra.Command, l *lab, _ []string) error {
			out := io.Discard
			if verbose {
				out = cmd.OutOrStdout()
			}
			b := &imageBuilder{cli: l.cli, out: cmd.OutOrStdout(), verbose: out, rebuild: rebuild}
			spec := nodeImageSpec
			if prebaked {
				spec = prebakedImageSpec // builds its parent, the node image, first
			}
			if err := b.ensure(cmd.Context(), spec); err != nil {
				return err
			}
			// The package cache of the lab repository, which needs the node image.
			if _, _, err := ensureRepo(cmd.Context(), l.cli, cmd.OutOrStdout(), true); err != nil {
				return err
			}
			// The key pair too, so that the state directory exists, belongs to the
			// user and holds the key before docker-compose mounts it into the worker.
			_, created, err := ensureKeyPair(l.paths)
			if err != nil {
				return err
			}
			verb := "present"
			if created {
				verb = "created"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab key: %s %s\n", verb, l.paths.Key)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&prebaked, "prebaked", false, "also build "+prebakedImage)
	cmd.Flags().BoolVar(&rebuild, "rebuild", false, "build even when up to date")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show build output")
	return cmd
}

func newRepoCommand(flags *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "repo",
		Short: "Make the lab apt repository's package cache (once per node image) and print its directory",
		Long: `repo builds ` + nodeImage + ` when needed, then makes sure the cache directory holds
the lab's flat apt repository for that image: ` + repoPackages + ` and every package it depends on,
downloaded once by apt in a throwaway container of the image (from the image's own
sources, Debian's mirror), with Packages, Release and SHA256SUMS files. It also builds the
repository server (a static Go binary). The cache is shared by every lab: ` + "`lab up`" + `
serves it from the lab's container NAME-repo at address .` + strconv.Itoa(repoHost) + ` of the lab's subnet,
the nodes' only apt source. This is an installation step: make test-lab and make demo
run it, and the tests (` + envNoFetch + `=1) never download.`,
		Args: cobra.NoArgs,
		RunE: withLab(flags, func(cmd *cobra.Command, l *lab, _ []string) error {
			// Progress on stderr: stdout is the directory alone.
			b := &imageBuilder{cli: l.cli, out: cmd.ErrOrStderr(), verbose: io.Discard}
			if err := b.ensure(cmd.Context(), nodeImageSpec); err != nil {
				return err
			}
			dir, _, err := ensureRepo(cmd.Context(), l.cli, cmd.ErrOrStderr(), true)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), dir)
			return nil
		}),
	}
}

func newConsulCommand(flags *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "consul",
		Short: "Print the path of the lab's consul binary, building it when the cache has none",
		Long: `consul makes sure the cache directory holds consul ` + consulVersion + ` (built from
` + consulModuleDir + ` with the Go module proxy when missing: ~20 min cold on 2 cores) and a
SHA256SUMS file beside it, puts both in the lab state directory as consul and
` + consulSums + ` (as ` + "`lab up`" + ` does), and prints the cached binary's path. The build
log goes to stderr.`,
		Example: `  go run ./lab consul
  sha256sum "$(go run ./lab consul)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := ensureConsul(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			spec, err := flags.spec(cmd)
			if err != nil {
				return err
			}
			p, err := spec.statePaths()
			if err != nil {
				return err
			}
			if _, err := installConsul(p); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), bin)
			return nil
		},
	}
}

func newSSHCommand(flags *labFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh NODE [-- COMMAND [ARG...]]",
		Short: "Log into a node with the system ssh (lab key, lab known_hosts, strict)",
		Long: `ssh runs the system ssh as root@NODE with the lab key and the lab's known_hosts,
StrictHostKeyChecking=yes, and no ssh_config file. Without a command it opens a shell.`,
		Args: cobra.MinimumNArgs(1),
		RunE: withLab(flags, func(cmd *cobra.Command, l *lab, args []string) error {
			remote := args[1:]
			if len(remote) > 0 && remote[0] == "--" {
				remote = remote[1:]
			}
			argv, err := sshArgv(cmd.Context(), l, args[0], remote)
			if err != nil {
				return err
			}
			c := exec.Command(argv[0], argv[1:]...)
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := c.Run(); err != nil {
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					return exitStatusError{code: exit.ExitCode()}
				}
				return fmt.Errorf("ssh: %w", err)
			}
			return nil
		}),
	}
	// Everything after NODE belongs to the remote command, flags included.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// sshArgv is the system ssh command line for a node of the running lab.
func sshArgv(ctx context.Context, l *lab, name string, command []string) ([]string, error) {
	n, ok := l.spec.nodeByName(name)
	if !ok {
		return nil, fmt.Errorf("no node %q: nodes are master, slave01 ... slave%02d", name, maxNodes-1)
	}
	nodes, err := l.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	var found *running
	for i := range nodes {
		if nodes[i].node.Name == n.Name {
			found = &nodes[i]
		}
	}
	switch {
	case found == nil:
		return nil, fmt.Errorf("node %s of lab %s does not exist (run: %s)", name, l.spec.Name, l.spec.command("up"))
	case found.state != "running":
		return nil, fmt.Errorf("node %s of lab %s is %s (run: %s)", name, l.spec.Name, found.state, l.spec.command("up"))
	}
	for _, f := range []string{l.paths.Key, l.paths.KnownHosts} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%w (run: %s)", err, l.spec.command("up"))
		}
	}
	bin, err := exec.LookPath("ssh")
	if err != nil {
		return nil, errors.New("no ssh client on PATH: install openssh-client (lab/prereqs.sh does)")
	}
	argv := []string{bin,
		"-F", "none",
		"-i", l.paths.Key,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + l.paths.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no",
		"-o", "PasswordAuthentication=no",
		"-o", "HostKeyAlgorithms=ssh-ed25519",
		"-p", strconv.Itoa(sshPort),
		"-l", nodeUser,
		"--", n.Address.String(),
	}
	// As with ssh itself, the remote shell parses the joined command words.
	return append(argv, command...), nil
}
