package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
)

// env is one benchmark run's world: the binaries, an embedded Temporal server in a
// process of its own, and the worker processes started on it.
type env struct {
	dir    string // scratch directory, removed at the end
	bin    string // worker, starter, lab binaries
	addr   string // Temporal frontend
	server *exec.Cmd
	client client.Client
	log    io.Writer // progress lines (stderr)
	pprof  string    // pprof address of the last worker started
	// serverPprof is the embedded server's pprof address.
	serverPprof string
}

// prereqs installs what the benchmark runs beside clusterflow: Ansible (Debian's
// ansible 7.7 / ansible-core 2.14 with community.docker), OpenSSH client and server.
func prereqs(log io.Writer) error {
	need := map[string]string{
		"ansible":          "ansible",
		"ansible-playbook": "ansible",
		"ssh":              "openssh-client",
		"scp":              "openssh-client",
		"/usr/sbin/sshd":   "openssh-server",
		"xargs":            "findutils",
		"python3":          "python3",
	}
	var pkgs []string
	for cmd, pkg := range need {
		if _, err := exec.LookPath(cmd); err != nil && !slices.Contains(pkgs, pkg) {
			pkgs = append(pkgs, pkg)
		}
	}
	if len(pkgs) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing commands; install as root: apt-get install -y %s", strings.Join(pkgs, " "))
	}
	fmt.Fprintf(log, "installing %s with apt-get ...\n", strings.Join(pkgs, " "))
	cmd := exec.Command("sh", "-c", "apt-get update -q && apt-get install -y -q "+strings.Join(pkgs, " "))
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = log, log
	return cmd.Run()
}

// newEnv builds the binaries and starts the embedded Temporal server (no Web UI).
func newEnv(ctx context.Context, log io.Writer) (*env, error) {
	dir, err := os.MkdirTemp("", "clusterflow-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, bin: filepath.Join(dir, "bin"), log: log}
	fmt.Fprintln(log, "building worker, starter and lab ...")
	for _, name := range []string{"worker", "starter", "lab"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(e.bin, name), "./"+name)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			e.close()
			return nil, fmt.Errorf("building %s: %w", name, err)
		}
	}
	port, err := freePort()
	if err != nil {
		e.close()
		return nil, err
	}
	e.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	pport, err := freePort()
	if err != nil {
		e.close()
		return nil, err
	}
	e.serverPprof = net.JoinHostPort("127.0.0.1", strconv.Itoa(pport))
	e.server, _, err = e.startProc("server", "server", "--grpc-port", strconv.Itoa(port), "--ui-port", "0",
		"--state-dir", filepath.Join(dir, "state"))
	if err != nil {
		e.close()
		return nil, err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		e.client, err = client.Dial(client.Options{HostPort: e.addr, Logger: quietLogger{}})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			e.close()
			return nil, fmt.Errorf("embedded server did not come up: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return e, nil
}

// startProc starts a worker-binary process (the server or a worker) with its output
// in a log file of the scratch directory. ready is closed when the process printed
// a line containing readyLine (never, when readyLine is empty).
func (e *env) startProc(label string, args ...string) (*exec.Cmd, <-chan struct{}, error) {
	return e.startProcReady(label, "", args...)
}

func (e *env) startProcReady(label, readyLine string, args ...string) (*exec.Cmd, <-chan struct{}, error) {
	return e.startProcEnv(label, readyLine, nil, args...)
}

// startProcEnv is startProcReady with extra environment, which wins over the rest.
func (e *env) startProcEnv(label, readyLine string, extraEnv []string, args ...string) (*exec.Cmd, <-chan struct{}, error) {
	cmd := exec.Command(filepath.Join(e.bin, "worker"), args...)
	cmd.Env = append(os.Environ(), "CLUSTERFLOW_LOG_LEVEL=warn", "CLUSTERFLOW_METRICS_ADDRESS=off")
	if args[0] == "server" {
		cmd.Env = append(cmd.Env, "CLUSTERFLOW_PPROF_ADDRESS="+e.serverPprof)
	} else {
		cmd.Env = append(cmd.Env, "CLUSTERFLOW_PPROF_ADDRESS="+e.pprof)
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.OpenFile(filepath.Join(e.dir, label+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = logf
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	ready := make(chan struct{})
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, nil, fmt.Errorf("starting %s: %w", label, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		seen := false
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			if !seen && readyLine != "" && strings.Contains(sc.Text(), readyLine) {
				seen = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		logf.Close()
	}()
	return cmd, ready, nil
}

// startWorker starts a worker process and returns once it polls the task queue.
// The worker serves pprof on a free loopback port (e.pprof), for -profile.
func (e *env) startWorker() (*exec.Cmd, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	e.pprof = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	w, ready, err := e.startProcReady("worker", "worker polling task queue", "--address", e.addr,
		"--state-dir", filepath.Join(e.dir, "state"), "--playbook-dir", e.dir)
	if err != nil {
		return nil, err
	}
	select {
	case <-ready:
		return w, nil
	case <-time.After(60 * time.Second):
		stopProc(w)
		return nil, errors.New("worker did not start polling within 60s; see " + filepath.Join(e.dir, "worker.log"))
	}
}

// stopProc ends a process this benchmark started: SIGTERM, then SIGKILL after 15 s.
func stopProc(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return // already gone
	}
	deadline := time.Now().Add(15 * time.Second)
	for processAlive(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processAlive reports whether pid runs and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// rssMiB reads a process's resident set (current and peak) in MiB.
func rssMiB(pid int) (cur, peak float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			cur = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return cur, peak
}

func (e *env) close() {
	if e.client != nil {
		e.client.Close()
	}
	stopProc(e.server)
	if os.Getenv("CLUSTERFLOW_BENCH_KEEP") == "" {
		os.RemoveAll(e.dir)
	} else {
		fmt.Fprintln(e.log, "kept", e.dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// timed runs cmd and returns its wall time; output goes to the log file given.
func timed(logPath string, name string, args ...string) (time.Duration, error) {
	return timedEnv(logPath, nil, name, args...)
}

func timedEnv(logPath string, extraEnv []string, name string, args ...string) (time.Duration, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ %s %s\n", name, strings.Join(args, " "))
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	err = cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s %s: %w (log: %s)", name, strings.Join(args, " "), err, logPath)
	}
	return d, nil
}

// quietLogger drops the SDK client's log lines.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}

func numCPU() int { return runtime.NumCPU() }

// machineNote names the versions compared.
func machineNote() string {
	var parts []string
	if out, err := exec.Command("ansible", "--version").Output(); err == nil {
		parts = append(parts, strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]))
	}
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		parts = append(parts, strings.TrimSpace(strings.SplitN(string(out), ",", 2)[0]))
	}
	parts = append(parts, runtime.Version())
	return strings.Join(parts, ", ")
}

// fetch saves a URL's body (a profile from the worker's loopback pprof endpoint).
func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
