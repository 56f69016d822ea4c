package activities

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/sshtest"
	"github.com/clusterflow/clusterflow/playbooks"
)

// These tests cover the Docker activities' logic without installing anything on
// this machine: parsing, merging, file generation and error typing, plus the
// activities that only read (DetectOS) or write into a temporary directory
// (ConfigureDockerDaemon) over a loopback sshd. Installing, starting and the API over
// SSH run on the lab nodes (internal/e2e, -tags lab).

func TestParseOSReleaseAndSupport(t *testing.T) {
	cases := []struct {
		name, text, arch string
		apt              bool
		family, codename string
		problem          string // substring of the refusal; "" means supported
	}{
		{name: "debian", arch: "amd64", apt: true, family: "debian", codename: "bookworm", text: `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
`},
		{name: "ubuntu", arch: "arm64", apt: true, family: "ubuntu", codename: "jammy", text: `NAME="Ubuntu"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
ID=ubuntu
ID_LIKE=debian
PRETTY_NAME="Ubuntu 22.04.4 LTS"
VERSION_CODENAME=jammy
UBUNTU_CODENAME=jammy
`},
		{name: "mint uses the ubuntu codename", arch: "amd64", apt: true, family: "ubuntu", codename: "jammy", text: `NAME="Linux Mint"
ID=linuxmint
ID_LIKE="ubuntu debian"
PRETTY_NAME="Linux Mint 21.3"
VERSION_CODENAME=virginia
UBUNTU_CODENAME=jammy
`},
		{name: "raspbian is debian-like", arch: "armhf", apt: true, family: "debian", codename: "bookworm", text: `PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"
ID=raspbian
ID_LIKE=debian
VERSION_CODENAME=bookworm
`},
		{name: "quoting and comments", arch: "amd64", apt: true, family: "debian", codename: "trixie", text: "# comment\n\nID='debian'\nPRETTY_NAME=\"Debian \\\"testing\\\"\"\nVERSION_CODENAME=trixie\n"},
		{name: "fedora", arch: "", apt: false, problem: `unsupported operating system "Fedora Linux 40 (Server Edition)" (ID=fedora)`, text: `NAME="Fedora Linux"
ID=fedora
PRETTY_NAME="Fedora Linux 40 (Server Edition)"
`},
		{name: "rocky names its ID_LIKE", arch: "", apt: false, problem: `ID=rocky, ID_LIKE=rhel centos fedora`, text: `ID="rocky"
ID_LIKE="rhel centos fedora"
PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"
`},
		{name: "debian-like without apt", arch: "", apt: false, problem: "has no apt-get or dpkg-query", text: "ID=debian\nPRETTY_NAME=x\n"},
		{name: "no os-release", problem: "no /etc/os-release"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, problem := osInfoFrom(parseOSRelease(c.text), c.arch, c.apt)
			if c.problem != "" {
				if !strings.Contains(problem, c.problem) {
					t.Fatalf("problem %q, want it to contain %q", problem, c.problem)
				}
				return
			}
			if problem != "" {
				t.Fatalf("refused: %s", problem)
			}
			if info.Family != c.family || info.Codename != c.codename || info.Arch != c.arch {
				t.Fatalf("got %+v", info)
			}
		})
	}
	if got := parseOSRelease("PRETTY_NAME=\"Debian \\\"testing\\\" \\$HOME\"\n")["PRETTY_NAME"]; got != `Debian "testing" $HOME` {
		t.Fatalf("unquoting: %q", got)
	}
}

func TestVersionMatchesAndPick(t *testing.T) {
	for _, c := range []struct {
		v, want string
		ok      bool
	}{
		{"20.10.24+dfsg1-1+deb12u1+b6", "", true},
		{"20.10.24+dfsg1-1+deb12u1+b6", "20.10.24+dfsg1-1+deb12u1+b6", true},
		{"20.10.24+dfsg1-1+deb12u1+b6", "20.10.24", true},
		{"20.10.24+dfsg1-1+deb12u1+b6", "20.10.2", false},
		{"20.10.24+dfsg1-1+deb12u1+b6", "20.10", false},
		{"5:27.3.1-1~debian.12~bookworm", "27.3.1", true},
		{"5:27.3.1-1~debian.12~bookworm", "5:27.3.1-1~debian.12~bookworm", true},
		{"5:27.3.1-1~debian.12~bookworm", "27.3.1-1~debian.12~bookworm", true},
		{"5:27.3.10-1~debian.12~bookworm", "27.3.1", false},
		{"5:27.3.1-1~debian.12~bookworm", "4:27.3.1", false},
	} {
		if got := versionMatches(c.v, c.want); got != c.ok {
			t.Errorf("versionMatches(%q, %q) = %v", c.v, c.want, got)
		}
	}

	madison := ` docker-ce | 5:27.3.1-1~debian.12~bookworm | https://download.docker.com/linux/debian bookworm/stable amd64 Packages
 docker-ce | 5:27.3.0-1~debian.12~bookworm | https://download.docker.com/linux/debian bookworm/stable amd64 Packages
 docker-ce | 5:26.1.4-1~debian.12~bookworm | https://download.docker.com/linux/debian bookworm/stable amd64 Packages
 docker-ce | 5:26.1.4-1~debian.12~bookworm | https://mirror.example/linux/debian bookworm/stable amd64 Packages
`
	vs := parseMadison(madison)
	if len(vs) != 3 || vs[0] != "5:27.3.1-1~debian.12~bookworm" {
		t.Fatalf("madison: %q", vs)
	}
	if v, ok := pickVersion(vs, "26.1.4"); !ok || v != "5:26.1.4-1~debian.12~bookworm" {
		t.Fatalf("pick 26.1.4: %q %v", v, ok)
	}
	if v, ok := pickVersion(vs, "27.3"); ok {
		t.Fatalf("27.3 must not match a patch release: %q", v)
	}
	if _, ok := pickVersion(vs, "25.0.0"); ok {
		t.Fatal("25.0.0 is not available")
	}
}

func TestDpkgQueryParsing(t *testing.T) {
	out := "docker.io\tinstall ok installed\t20.10.24+dfsg1-1+deb12u1+b6\n" +
		"containerd\tinstall ok unpacked\t1.6.20~ds1-1+deb12u3\n" +
		"runc:amd64\tinstall reinstreq half-installed\t1.1.5+ds1-1+deb12u1\n" +
		"docker-ce\tunknown ok not-installed\t\n"
	have := parseDpkgQuery(out)
	if !have["docker.io"].installed() || have["containerd"].installed() || have["runc"].installed() || have["docker-ce"].installed() {
		t.Fatalf("states: %+v", have)
	}
	pin := func(v string) func(string) string { return func(string) string { return v } }
	if m := missingPackages(have, []string{"docker.io"}, pin("")); len(m) != 0 {
		t.Fatalf("unpinned docker.io missing: %v", m)
	}
	if m := missingPackages(have, []string{"docker.io"}, pin("20.10.24")); len(m) != 0 {
		t.Fatalf("docker.io 20.10.24 missing: %v", m)
	}
	if m := missingPackages(have, []string{"docker.io"}, pin("24.0.5")); !slices.Equal(m, []string{"docker.io"}) {
		t.Fatalf("pinned to another version: %v", m)
	}
	if m := missingPackages(have, []string{"docker.io", "containerd", "runc", "nosuch"}, pin("")); !slices.Equal(m, []string{"containerd", "runc", "nosuch"}) {
		t.Fatalf("missing: %v", m)
	}
}

func TestDockerRepoSources(t *testing.T) {
	deb := OSInfo{ID: "debian", Family: "debian", Codename: "bookworm", Arch: "amd64"}
	ubu := OSInfo{ID: "ubuntu", Family: "ubuntu", Codename: "noble", Arch: "arm64"}
	if got, want := dockerSourcesLine("", deb), "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable\n"; got != want {
		t.Errorf("default:\n got %q\nwant %q", got, want)
	}
	if got, want := dockerSourcesLine("http://mirror.lan:8080/docker-ce/linux/", ubu), "deb [arch=arm64 signed-by=/etc/apt/keyrings/docker.asc] http://mirror.lan:8080/docker-ce/linux/ubuntu noble stable\n"; got != want {
		t.Errorf("mirror:\n got %q\nwant %q", got, want)
	}
	if got := dockerKeyURL("", deb); got != "https://download.docker.com/linux/debian/gpg" {
		t.Errorf("key URL %q", got)
	}
	if got := dockerKeyURL("https://mirrors.example.org/docker-ce/linux", ubu); got != "https://mirrors.example.org/docker-ce/linux/ubuntu/gpg" {
		t.Errorf("mirror key URL %q", got)
	}
	// The script gets the URL and the line as arguments of their own.
	repo := dockerRepo("", deb)
	argv := aptRepoScript.cmd(repo.keyURL, repo.line, repo.keyring, repo.list).Argv
	if want := []string{"apt-repo.sh", "https://download.docker.com/linux/debian/gpg", dockerSourcesLine("", deb), dockerKeyring, dockerSourcesList}; !slices.Equal(argv[3:], want) {
		t.Errorf("argv %q, want %q", argv[3:], want)
	}
	if repo.url != DefaultDockerMirror {
		t.Errorf("repo url %q", repo.url)
	}
}

func TestAptCommandLines(t *testing.T) {
	install := strings.Join(aptBase("install"), " ")
	for _, want := range []string{"apt-get install -y", "-o DPkg::Lock::Timeout=60", "--no-install-recommends", "--force-confold"} {
		if !strings.Contains(install, want) {
			t.Errorf("install %q lacks %q", install, want)
		}
	}
	if strings.Contains(strings.Join(aptBase("update"), " "), "--no-install-recommends") {
		t.Error("update takes no install options")
	}
}

func TestAptErrorTypes(t *testing.T) {
	h := remote.Host{Name: "n1", Address: "127.0.0.1", Port: 22}
	a := NewDocker(nil).apt(&hostOp{host: h})
	busy := a.failed("apt-get install docker.io", remote.Result{ExitCode: 100,
		Stderr: "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)\nE: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?\n"})
	appErr := requireAppErr(t, busy, ErrPackageManagerBusy, true)
	if appErr.NextRetryDelay() != 15*time.Second {
		t.Errorf("busy: next retry delay %s", appErr.NextRetryDelay())
	}
	if !strings.Contains(appErr.Message(), "held by process 4242") {
		t.Errorf("busy message %q", appErr.Message())
	}
	gone := a.failed("apt-get install docker.io=1.0", remote.Result{ExitCode: 100, Stdout: "Reading package lists...\n",
		Stderr: "E: Version '1.0' for 'docker.io' was not found\n"})
	requireAppErr(t, gone, ErrPackageUnavailable, false)
	unmet := a.failed("apt-get install", remote.Result{ExitCode: 100, Stdout: "The following packages have unmet dependencies:\n docker.io : Depends: runc (>= 1.0.0~rc92~) but it is not installable\n",
		Stderr: "E: Unable to correct problems, you have held broken packages.\n"})
	requireAppErr(t, unmet, ErrPackageUnavailable, false)
	net := a.failed("apt-get update", remote.Result{ExitCode: 100,
		Stderr: "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'\nE: Some index files failed to download. They have been ignored, or old ones used instead.\n"})
	appErr = requireAppErr(t, net, ErrPackageInstallFailed, true)
	if !strings.Contains(appErr.Message(), "host n1 (127.0.0.1:22): apt-get update failed (exit 100): E: Some index files") {
		t.Errorf("message %q", appErr.Message())
	}
}

func TestMergeDaemonConfig(t *testing.T) {
	patch := map[string]any{"log-driver": "json-file", "log-opts": map[string]any{"max-size": "10m", "max-file": "3"}, "max-concurrent-downloads": 3}

	// No file: the patch is the file.
	out, keys, err := mergeDaemonConfig(nil, patch)
	if err != nil || !slices.Equal(keys, []string{"log-driver", "log-opts", "max-concurrent-downloads"}) {
		t.Fatalf("new: %v %v", keys, err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil || got["log-driver"] != "json-file" || !strings.HasSuffix(string(out), "}\n") {
		t.Fatalf("new file %s: %v", out, err)
	}

	// Other keys are kept; equal values (1 and 1.0, maps in another order) are no change.
	current := []byte(`{"max-concurrent-downloads": 3.0, "log-opts": {"max-file": "3", "max-size": "10m"}, "data-root": "/srv/docker", "big": 12345678901234567890}`)
	out, keys, err = mergeDaemonConfig(current, patch)
	if err != nil || !slices.Equal(keys, []string{"log-driver"}) {
		t.Fatalf("merge: %v %v", keys, err)
	}
	if !strings.Contains(string(out), `"data-root": "/srv/docker"`) || !strings.Contains(string(out), `"big": 12345678901234567890`) {
		t.Fatalf("merge lost or rounded a key:\n%s", out)
	}
	// Everything in place: nothing to write.
	if out2, keys, err := mergeDaemonConfig(out, patch); err != nil || keys != nil || out2 != nil {
		t.Fatalf("second merge: %s %v %v", out2, keys, err)
	}
	// A null value removes the key, once.
	out, keys, err = mergeDaemonConfig(out, map[string]any{"data-root": nil, "absent": nil})
	if err != nil || !slices.Equal(keys, []string{"data-root"}) || strings.Contains(string(out), "data-root") {
		t.Fatalf("remove: %s %v %v", out, keys, err)
	}
	// An empty file counts as {}; no HTML escaping of values.
	out, _, err = mergeDaemonConfig([]byte("  \n"), map[string]any{"hosts": []any{"unix:///var/run/docker.sock"}, "label": "a<b&c"})
	if err != nil || !strings.Contains(string(out), `"a<b&c"`) {
		t.Fatalf("empty file: %s %v", out, err)
	}
	for _, bad := range []string{`{"a": 1`, `[1, 2]`, `"text"`, `{"a":1} {"b":2}`} {
		if _, _, err := mergeDaemonConfig([]byte(bad), patch); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSHA256SUMSAndBundle(t *testing.T) {
	sums, err := parseSHA256SUMS("# made by hand\n" +
		strings.Repeat("a", 64) + "  docker.io_20.10.24+dfsg1-1+deb12u1+b6_amd64.deb\n" +
		strings.Repeat("B", 64) + " *./runc_1.1.5+ds1-1+deb12u1_amd64.deb\r\n\n")
	if err != nil || len(sums) != 2 || sums["runc_1.1.5+ds1-1+deb12u1_amd64.deb"] != strings.Repeat("b", 64) {
		t.Fatalf("sums %v, %v", sums, err)
	}
	for _, bad := range []string{"abc  x.deb\n", strings.Repeat("g", 64) + "  x.deb\n", strings.Repeat("a", 64) + "  dir/x.deb\n", strings.Repeat("a", 64) + "\n"} {
		if _, err := parseSHA256SUMS(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}

	pkg, v, arch, ok := parseDebName("dmsetup_2%3a1.02.185-2_amd64.deb")
	if !ok || pkg != "dmsetup" || v != "2:1.02.185-2" || arch != "amd64" {
		t.Fatalf("deb name: %q %q %q %v", pkg, v, arch, ok)
	}
	if _, _, _, ok := parseDebName("docker.deb"); ok {
		t.Fatal("docker.deb parsed")
	}

	dir := t.TempDir()
	files := map[string]string{
		"docker.io_20.10.24+dfsg1-1+deb12u1+b6_amd64.deb": "engine",
		"dmsetup_2%3a1.02.185-2_amd64.deb":                "dmsetup",
		"tini_0.19.0-1+b3_amd64.deb":                      "tini",
		"README":                                          "not a package",
	}
	var list strings.Builder
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), []byte(content))
		if strings.HasSuffix(name, ".deb") {
			list.WriteString(sum([]byte(content)) + "  " + name + "\n")
		}
	}
	b, problem := readBundle(dir, "20.10.24", "amd64")
	if problem != "" {
		t.Fatal(problem)
	}
	if b.engine.Pkg != "docker.io" || len(b.files) != 3 || b.sums || !slices.Equal(b.enginePackages(), []string{"docker.io"}) {
		t.Fatalf("bundle %+v", b)
	}
	if _, problem := readBundle(dir, "24.0.5", "amd64"); !strings.Contains(problem, "not the pinned 24.0.5") {
		t.Errorf("version pin: %q", problem)
	}
	if _, problem := readBundle(dir, "", "arm64"); !strings.Contains(problem, "is for amd64, the host is arm64") {
		t.Errorf("arch: %q", problem)
	}
	if _, problem := readBundle("relative/dir", "", ""); !strings.Contains(problem, "absolute") {
		t.Errorf("relative: %q", problem)
	}

	// With SHA256SUMS: every file checked.
	writeFile(t, filepath.Join(dir, "SHA256SUMS"), []byte(list.String()))
	if b, problem = readBundle(dir, "", "amd64"); problem != "" || !b.sums {
		t.Fatalf("with sums: %q", problem)
	}
	writeFile(t, filepath.Join(dir, "tini_0.19.0-1+b3_amd64.deb"), []byte("tampered"))
	if _, problem := readBundle(dir, "", "amd64"); !strings.Contains(problem, "tini_0.19.0-1+b3_amd64.deb has SHA-256") || !strings.Contains(problem, "damaged") {
		t.Errorf("tampered: %q", problem)
	}
	writeFile(t, filepath.Join(dir, "tini_0.19.0-1+b3_amd64.deb"), []byte("tini"))
	writeFile(t, filepath.Join(dir, "extra_1_all.deb"), []byte("extra"))
	if _, problem := readBundle(dir, "", "amd64"); !strings.Contains(problem, "extra_1_all.deb is not listed") {
		t.Errorf("unlisted: %q", problem)
	}
	os.Remove(filepath.Join(dir, "extra_1_all.deb"))
	os.Remove(filepath.Join(dir, "tini_0.19.0-1+b3_amd64.deb"))
	if _, problem := readBundle(dir, "", "amd64"); !strings.Contains(problem, "lists tini_0.19.0-1+b3_amd64.deb, which is missing") {
		t.Errorf("missing: %q", problem)
	}
	os.Remove(filepath.Join(dir, "docker.io_20.10.24+dfsg1-1+deb12u1+b6_amd64.deb"))
	os.Remove(filepath.Join(dir, "SHA256SUMS"))
	if _, problem := readBundle(dir, "", "amd64"); !strings.Contains(problem, "neither a docker-ce nor a docker.io") {
		t.Errorf("no engine: %q", problem)
	}
}

// TestInstallDockerPackagesRefusesBadInput needs no host: input problems are found
// before anything is sent.
func TestInstallDockerPackagesRefusesBadInput(t *testing.T) {
	d := NewDocker(nil)
	h := remote.Host{Name: "n1", Address: "127.0.0.1", User: "root"}
	ctx := context.Background()
	for name, req := range map[string]PackagesRequest{
		"source":   {Host: h, Source: "snap"},
		"bundle":   {Host: h, Source: playbooks.DockerFromOffline, Packages: filepath.Join(t.TempDir(), "nope")},
		"version":  {Host: h, Version: "1.0; reboot"},
		"codename": {Host: h, Source: playbooks.DockerFromRepo, OS: OSInfo{Name: "Debian sid", Family: "debian"}},
	} {
		_, err := d.InstallDockerPackages(ctx, req)
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || !appErr.NonRetryable() {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestDockerChangeCarriesOverAttempts: a change recorded in the previous attempt's
// last heartbeat is reported by the next attempt.
func TestDockerChangeCarriesOverAttempts(t *testing.T) {
	d := NewDocker(nil)
	probe := func(ctx context.Context) (bool, error) {
		op, done := d.begin(ctx, remote.Host{Name: "n1"})
		defer done()
		return op.changedSoFar(), nil
	}
	for _, prev := range []bool{false, true} {
		env, _ := activityEnv(t)
		env.RegisterActivityWithOptions(probe, activity.RegisterOptions{Name: "Probe"})
		env.SetHeartbeatDetails(HostProgress{Phase: "apt-get install", Changed: prev})
		v, err := env.ExecuteActivity("Probe")
		if err != nil {
			t.Fatal(err)
		}
		var got bool
		if err := v.Get(&got); err != nil || got != prev {
			t.Errorf("previous attempt changed=%v: this one says %v (%v)", prev, got, err)
		}
	}
}

// TestDetectOSAndDaemonConfigOverSSH runs the two activities that are safe on this
// machine through a loopback sshd: DetectOS only reads, and ConfigureDockerDaemon
// is pointed at a file in a temporary directory.
func TestDetectOSAndDaemonConfigOverSSH(t *testing.T) {
	s := sshtest.New(t, 1)
	d := NewDocker(sshtest.Pool(t, remote.PoolOptions{}, nil))
	d.daemonJSON = filepath.Join(t.TempDir(), "etc-docker", "daemon.json")
	ctx := context.Background()
	h := s.Host(0)

	info, err := d.DetectOS(ctx, DockerHostRequest{Host: h})
	if _, statErr := os.Stat("/usr/bin/apt-get"); statErr != nil {
		t.Logf("not a Debian-like machine: %v", err)
	} else if err != nil || info.Family == "" || info.Arch == "" {
		t.Fatalf("DetectOS: %+v %v", info, err)
	} else {
		t.Logf("this machine: %+v", info)
	}

	conf := map[string]any{"log-driver": "json-file", "log-opts": map[string]any{"max-size": "10m"}}
	res, err := d.ConfigureDockerDaemon(ctx, DaemonConfigRequest{Host: h, Config: conf})
	if err != nil || !res.Changed || !slices.Equal(res.Keys, []string{"log-driver", "log-opts"}) {
		t.Fatalf("first: %+v %v", res, err)
	}
	fi, _ := os.Stat(d.daemonJSON)
	// Unchanged: the file is not rewritten.
	res, err = d.ConfigureDockerDaemon(ctx, DaemonConfigRequest{Host: h, Config: conf})
	if err != nil || res.Changed {
		t.Fatalf("second: %+v %v", res, err)
	}
	if fi2, _ := os.Stat(d.daemonJSON); !os.SameFile(fi, fi2) || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatal("daemon.json rewritten although unchanged")
	}
	// A key set by hand is kept; the file's mode too.
	var doc map[string]any
	b, _ := os.ReadFile(d.daemonJSON)
	_ = json.Unmarshal(b, &doc)
	doc["data-root"] = "/srv/docker"
	b, _ = json.Marshal(doc)
	writeFile(t, d.daemonJSON, b)
	os.Chmod(d.daemonJSON, 0o600)
	res, err = d.ConfigureDockerDaemon(ctx, DaemonConfigRequest{Host: h, Config: map[string]any{"log-driver": "local"}})
	if err != nil || !res.Changed {
		t.Fatalf("third: %+v %v", res, err)
	}
	b, _ = os.ReadFile(d.daemonJSON)
	doc = nil
	if err := json.Unmarshal(b, &doc); err != nil || doc["data-root"] != "/srv/docker" || doc["log-driver"] != "local" || doc["log-opts"] == nil {
		t.Fatalf("merged file: %s %v", b, err)
	}
	if fi, _ := os.Stat(d.daemonJSON); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 kept", fi.Mode().Perm())
	}
	noTempFiles(t, filepath.Dir(d.daemonJSON))

	// A large file is read over SFTP.
	doc["labels"] = strings.Split(strings.Repeat("node-label=some-value,", 400), ",")
	b, _ = json.MarshalIndent(doc, "", "  ")
	writeFile(t, d.daemonJSON, b)
	res, err = d.ConfigureDockerDaemon(ctx, DaemonConfigRequest{Host: h, Config: map[string]any{"log-driver": "journald"}})
	if err != nil || !res.Changed {
		t.Fatalf("large: %+v %v", res, err)
	}
	b, _ = os.ReadFile(d.daemonJSON)
	doc = nil
	if err := json.Unmarshal(b, &doc); err != nil || len(doc["labels"].([]any)) != 401 || doc["log-driver"] != "journald" {
		t.Fatalf("large file merged wrongly (%d bytes): %v", len(b), err)
	}

	// Not JSON: a non-retryable error naming the file, and the file is left alone.
	writeFile(t, d.daemonJSON, []byte("{ oops"))
	_, err = d.ConfigureDockerDaemon(ctx, DaemonConfigRequest{Host: h, Config: conf})
	appErr := requireAppErr(t, err, ErrInvalidDaemonConfig, false)
	if !strings.Contains(appErr.Message(), d.daemonJSON) {
		t.Errorf("message %q does not name the file", appErr.Message())
	}
	if b, _ := os.ReadFile(d.daemonJSON); string(b) != "{ oops" {
		t.Errorf("invalid file was changed: %q", b)
	}
	// No keys: nothing read, nothing written.
	if res, err := d.ConfigureDockerDaemon(ctx, DaemonConfigRequest{Host: h}); err != nil || res.Changed {
		t.Fatalf("empty config: %+v %v", res, err)
	}
	if !reflect.DeepEqual(res.Path, d.daemonJSON) {
		t.Errorf("path %q", res.Path)
	}
}
