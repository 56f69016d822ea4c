package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/clusterflow/clusterflow/playbooks"
)

// transferSize is the file sent in the transfer benchmark.
const transferSize = 200 << 20

// labRun holds the lab of this benchmark: a lab of its own, named cf-bench-XXXXXX
// (new each run), so that it never touches a lab it did not create, the user's
// default lab included, and runs beside them.
type labRun struct {
	e     *env
	name  string // the lab's name (CLUSTERFLOW_LAB of the lab tool)
	state string // CLUSTERFLOW_STATE_DIR of the lab tool
	dir   string
}

// newName gives the benchmark's lab a new name.
func (l *labRun) newName() { l.name = fmt.Sprintf("cf-bench-%06x", mrand.Uint32()&0xffffff) }

// errSubnetInUse is `lab up` refusing the lab's name: its subnet is another lab's.
var errSubnetInUse = errors.New("the lab's subnet is in use")

func (l *labRun) lab(args ...string) error {
	cmd := exec.Command(filepath.Join(l.e.bin, "lab"), args...)
	cmd.Env = append(os.Environ(), "CLUSTERFLOW_STATE_DIR="+l.state, "CLUSTERFLOW_LAB="+l.name)
	logf, err := os.OpenFile(filepath.Join(l.dir, "lab.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 3 {
			err = errSubnetInUse
		}
		return fmt.Errorf("lab --name %s %s: %w (log: %s)", l.name, strings.Join(args, " "), err, logf.Name())
	}
	return nil
}

// up brings up the benchmark's lab of 3 nodes (no Docker on them), or keeps it as it
// is; under another name when another lab holds the subnet of this one.
func (l *labRun) up() error {
	for try := 1; ; try++ {
		err := l.lab("up", "--nodes", "3")
		if !errors.Is(err, errSubnetInUse) || try == 5 {
			return err
		}
		fmt.Fprintf(l.e.log, "  %v: trying another name\n", err)
		l.newName()
	}
}

// fresh replaces the benchmark's lab with 3 new nodes.
func (l *labRun) fresh() error {
	if err := l.lab("down"); err != nil {
		return err
	}
	return l.up()
}

func (l *labRun) inventory() string { return filepath.Join(l.state, "labs", l.name, "inventory.yaml") }

// playbook writes a clusterflow playbook on the lab inventory.
func (l *labRun) playbook(name, steps string) (string, error) {
	path := filepath.Join(l.dir, name+".yaml")
	text := fmt.Sprintf("apiVersion: clusterflow.io/v1\nkind: Playbook\nmetadata:\n  name: %s\n  cluster: lab\nspec:\n  inventory:\n    include: [%s]\n  steps:\n%s",
		name, l.inventory(), steps)
	return path, os.WriteFile(path, []byte(text), 0o644)
}

// hosts are the lab nodes, as the inventory describes them.
func (l *labRun) hosts() ([]playbooks.Host, error) {
	pb, err := l.playbook("lab-hosts", "    - {name: noop, kind: run, hosts: all, command: [\"true\"]}\n")
	if err != nil {
		return nil, err
	}
	plan, err := playbooks.Load(pb)
	if err != nil {
		return nil, err
	}
	return plan.Hosts, nil
}

// nodeSh runs a shell line in a node of the benchmark's lab through the engine (setup
// and checks only).
func (l *labRun) nodeSh(node, script string) (string, error) {
	out, err := exec.Command("docker", "exec", l.name+"-"+node, "sh", "-c", script).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker exec %s: %w: %s", node, err, out)
	}
	return string(out), nil
}

// benchLab runs the benchmarks on a Docker lab of its own, and takes it down
// afterwards.
func benchLab(ctx context.Context, e *env, a *ansible, bootstrap, transfer bool, rounds int, t *table) error {
	l := &labRun{e: e, state: filepath.Join(e.dir, "labstate"), dir: filepath.Join(e.dir, "lab")}
	l.newName()
	if err := mkdir(l.dir); err != nil {
		return err
	}
	defer func() {
		if err := l.lab("down"); err != nil {
			fmt.Fprintln(e.log, "warning:", err)
		}
	}()
	w, err := e.startWorker()
	if err != nil {
		return err
	}
	defer stopProc(w)
	if bootstrap {
		fmt.Fprintln(e.log, "3. cluster bootstrap on 3 fresh lab nodes")
		if err := benchBootstrap(ctx, l, a, rounds, t); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	if transfer {
		fmt.Fprintln(e.log, "4. file transfer to a lab node")
		if err := benchTransfer(ctx, l, rounds, t); err != nil {
			return fmt.Errorf("transfer: %w", err)
		}
	}
	return nil
}

const ansibleBootstrap = `# The same work as clusterflow's installDocker (source: distro) + swarmInit steps.
- hosts: all
  gather_facts: false
  tasks:
    - name: python3 for Ansible's modules (fresh nodes have none)
      ansible.builtin.raw: test -x /usr/bin/python3 || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3)
      changed_when: false
    - name: docker.io from Debian (the apt module installs python3-apt first)
      ansible.builtin.apt: {name: docker.io, update_cache: true, install_recommends: false}
    - name: engine started by the node supervisor, as clusterflow does on lab nodes
      ansible.builtin.command: clusterflow-service start dockerd /usr/sbin/dockerd
    - name: engine answers
      ansible.builtin.command: docker version
      register: v
      retries: 30
      delay: 1
      until: v.rc == 0
    - name: Docker SDK for Python (community.docker.docker_swarm needs it)
      ansible.builtin.apt: {name: python3-docker, install_recommends: false}
- hosts: managers
  gather_facts: false
  tasks:
    - name: swarm init
      community.docker.docker_swarm: {state: present, advertise_addr: "{{ ansible_host }}"}
      register: swarm
- hosts: workers
  gather_facts: false
  tasks:
    - name: swarm join
      community.docker.docker_swarm:
        state: join
        advertise_addr: "{{ ansible_host }}"
        join_token: "{{ hostvars[groups['managers'][0]].swarm.swarm_facts.JoinTokens.Worker }}"
        remote_addrs: ["{{ hostvars[groups['managers'][0]].ansible_host }}:2377"]
`

const cfBootstrap = `    - {name: docker engine, kind: installDocker, hosts: all, source: distro}
    - {name: swarm, kind: swarmInit, hosts: all, managers: [master], advertiseAddr: address}
`

// labAnsibleInventory writes an INI inventory of the lab nodes.
func labAnsibleInventory(path string, hosts []playbooks.Host) error {
	var b strings.Builder
	for _, g := range []string{"managers", "workers"} {
		fmt.Fprintf(&b, "[%s]\n", g)
		for _, h := range hosts {
			if (h.Name == "master") == (g == "managers") {
				fmt.Fprintf(&b, "%s ansible_host=%s\n", h.Name, h.Address)
			}
		}
	}
	h := hosts[0]
	fmt.Fprintf(&b, "\n[all:vars]\nansible_user=%s\nansible_ssh_private_key_file=%s\n"+
		"ansible_ssh_common_args='-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes'\n"+
		"ansible_python_interpreter=/usr/bin/python3\n", h.User, h.IdentityFile, h.KnownHostsFile)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func (l *labRun) installedPackages(node string) ([]string, error) {
	out, err := l.nodeSh(node, "dpkg-query -W -f '${Package} ${Status}\\n' | awk '$NF == \"installed\" {print $1}'")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func benchBootstrap(ctx context.Context, l *labRun, a *ansible, rounds int, t *table) error {
	pb, err := l.playbook("bootstrap", cfBootstrap)
	if err != nil {
		return err
	}
	apb := filepath.Join(l.dir, "bootstrap-ansible.yaml")
	if err := os.WriteFile(apb, []byte(ansibleBootstrap), 0o644); err != nil {
		return err
	}
	inv := filepath.Join(l.dir, "hosts.ini")
	mode := a.defaults("bootstrap", false)
	var cf, ans []time.Duration
	var cfPkgs, ansPkgs []string
	for r := range rounds {
		if err := l.fresh(); err != nil {
			return err
		}
		d, _, err := l.e.runPlaybook(ctx, pb)
		if err != nil {
			return err
		}
		cf = append(cf, d)
		if cfPkgs, err = l.installedPackages("master"); err != nil {
			return err
		}
		if err := l.fresh(); err != nil {
			return err
		}
		hosts, err := l.hosts()
		if err != nil {
			return err
		}
		if err := labAnsibleInventory(inv, hosts); err != nil {
			return err
		}
		if d, err = a.playbook(mode, inv, 5, apb); err != nil {
			return err
		}
		a.stopMasters()
		ans = append(ans, d)
		if ansPkgs, err = l.installedPackages("master"); err != nil {
			return err
		}
		if out, err := l.nodeSh("slave01", "docker info --format '{{.Swarm.LocalNodeState}}'"); err != nil || strings.TrimSpace(out) != "active" {
			return fmt.Errorf("ansible's swarm: slave01 is %q (%v)", strings.TrimSpace(out), err)
		}
		fmt.Fprintf(l.e.log, "  bootstrap round %d/%d: clusterflow %s | ansible %s\n", r+1, rounds, ms(cf[r]), ms(ans[r]))
	}
	var extra, python []string
	for _, p := range ansPkgs {
		if !slices.Contains(cfPkgs, p) {
			extra = append(extra, p)
			if strings.Contains(p, "python") {
				python = append(python, p)
			}
		}
	}
	sec := "3. bootstrap, 3 fresh nodes"
	t.add(sec, "clusterflow (installDocker distro + swarmInit)", msStat(cf), "", "")
	t.add(sec, "ansible-playbook (apt + community.docker.docker_swarm)", msStat(ans), "", "")
	t.ratio(sec, "clusterflow / ansible", ratios(cf, ans), 0.6, true, false)
	t.add(sec, "packages Ansible added per node (beyond docker.io's set)",
		fmt.Sprintf("%d, %d of them Python (%s)", len(extra), len(python), strings.Join(python, " ")), "", "")
	return nil
}

func benchTransfer(ctx context.Context, l *labRun, rounds int, t *table) error {
	if err := l.up(); err != nil {
		return err
	}
	hosts, err := l.hosts()
	if err != nil {
		return err
	}
	h := hosts[0]
	src := filepath.Join(l.dir, "payload.bin")
	if err := randomFile(src, transferSize); err != nil {
		return err
	}
	pb, err := l.playbook("transfer", fmt.Sprintf("    - {name: upload, kind: upload, hosts: [%s], src: payload.bin, dest: /root/bench-upload.bin, mode: \"0644\", timeout: 10m}\n", h.Name))
	if err != nil {
		return err
	}
	scpArgs := append(sshOpts(h.IdentityFile, h.KnownHostsFile), src, fmt.Sprintf("%s@%s:/root/bench-scp.bin", h.User, h.Address))
	clean := func() error {
		_, err := l.nodeSh(h.Name, "rm -f /root/bench-upload.bin /root/bench-scp.bin; sync")
		return err
	}
	// One unmeasured upload: the worker's pool holds its connection after it.
	if _, _, err := l.e.runPlaybook(ctx, pb); err != nil {
		return err
	}
	var cf, scp []time.Duration
	for r := range rounds {
		if err := clean(); err != nil {
			return err
		}
		d, _, err := l.e.runPlaybook(ctx, pb)
		if err != nil {
			return err
		}
		cf = append(cf, d)
		if err := clean(); err != nil {
			return err
		}
		if d, err = timed(filepath.Join(l.dir, "scp.log"), "scp", scpArgs...); err != nil {
			return err
		}
		scp = append(scp, d)
		fmt.Fprintf(l.e.log, "  transfer round %d/%d: clusterflow %s | scp %s\n", r+1, rounds, ms(cf[r]), ms(scp[r]))
	}
	mbps := func(ds []time.Duration) string {
		return fmt.Sprintf("%.0f MB/s (%s)", float64(transferSize)/1e6/median(ds).Seconds(), ms(median(ds)))
	}
	sec := "4. transfer 200 MiB"
	t.add(sec, "clusterflow upload step (SFTP, checksum verified)", mbps(cf), "", "")
	t.add(sec, "scp", mbps(scp), "", "")
	t.ratio(sec, "clusterflow throughput / scp throughput", ratios(scp, cf), 1.0, true, true)
	return nil
}

func randomFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
