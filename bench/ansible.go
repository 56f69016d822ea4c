package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ansible runs Debian's Ansible with a configuration of its own in dir: no retry
// files, host key checking on, the given forks, and SSH multiplexing as asked.
type ansible struct {
	dir string
}

// ansibleMode is how Ansible connects.
type ansibleMode struct {
	name      string
	sshArgs   string // ansible_ssh_args
	pipelines bool
	cpDir     string // control path directory ("" for none)
}

// cold: a fresh connection per host and task (no ControlMaster).
func (a *ansible) cold() ansibleMode {
	return ansibleMode{name: "cold", sshArgs: "-o ControlMaster=no"}
}

// warm: Ansible's default multiplexing (ControlMaster=auto), persisting long enough
// for the whole benchmark; the masters are stopped by stopMasters.
func (a *ansible) warm(label string) ansibleMode {
	return ansibleMode{name: "warm", sshArgs: "-o ControlMaster=auto -o ControlPersist=900s", cpDir: filepath.Join(a.dir, "cp-"+label)}
}

// defaults: Ansible's own ssh_args (-C -o ControlMaster=auto -o ControlPersist=60s).
func (a *ansible) defaults(label string, pipelining bool) ansibleMode {
	return ansibleMode{name: label, sshArgs: "-C -o ControlMaster=auto -o ControlPersist=60s", pipelines: pipelining, cpDir: filepath.Join(a.dir, "cp-"+label)}
}

func (a *ansible) env(m ansibleMode, forks int) []string {
	env := []string{
		"ANSIBLE_CONFIG=" + filepath.Join(a.dir, "ansible.cfg"),
		"ANSIBLE_HOST_KEY_CHECKING=True",
		"ANSIBLE_RETRY_FILES_ENABLED=False",
		"ANSIBLE_FORKS=" + strconv.Itoa(forks),
		"ANSIBLE_SSH_ARGS=" + m.sshArgs,
		"ANSIBLE_PIPELINING=" + strconv.FormatBool(m.pipelines),
		"ANSIBLE_LOCAL_TEMP=" + filepath.Join(a.dir, "tmp"),
		"ANSIBLE_HOME=" + filepath.Join(a.dir, "home"),
		"ANSIBLE_NOCOLOR=1",
		// The loopback sshd refuses PTYs (PermitTTY no); no PTY is also the faster path.
		"ANSIBLE_SSH_USETTY=False",
		"ANSIBLE_DEPRECATION_WARNINGS=False",
	}
	if m.cpDir != "" {
		env = append(env, "ANSIBLE_SSH_CONTROL_PATH_DIR="+m.cpDir)
	}
	return env
}

func newAnsible(dir string) (*ansible, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// An empty config file keeps any /etc/ansible/ansible.cfg or ~/.ansible.cfg out.
	if err := os.WriteFile(filepath.Join(dir, "ansible.cfg"), []byte("[defaults]\n"), 0o644); err != nil {
		return nil, err
	}
	return &ansible{dir: dir}, nil
}

// adhoc runs `ansible all -m raw -a CMD` and returns its wall time.
func (a *ansible) adhoc(m ansibleMode, inventory string, forks int, command string) (time.Duration, error) {
	return timedEnv(filepath.Join(a.dir, "ansible.log"), a.env(m, forks), "ansible", "all", "-i", inventory, "-m", "raw", "-a", command)
}

// playbook runs ansible-playbook and returns its wall time.
func (a *ansible) playbook(m ansibleMode, inventory string, forks int, playbook string) (time.Duration, error) {
	return timedEnv(filepath.Join(a.dir, "ansible.log"), a.env(m, forks), "ansible-playbook", "-i", inventory, playbook)
}

// stopMasters ends the ControlPersist ssh masters this benchmark's Ansible runs left
// behind: the processes whose command line names the benchmark's control path
// directories (and so were started by this run).
func (a *ansible) stopMasters() int {
	n := 0
	for _, pid := range pidsWithArg(filepath.Join(a.dir, "cp-")) {
		if syscall.Kill(pid, syscall.SIGTERM) == nil {
			n++
		}
	}
	return n
}

// pidsWithArg lists the processes whose command line contains s.
func pidsWithArg(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}
