package activities

import (
	"embed"
	"path"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// The shell scripts the activities run on hosts are the files in scripts/, each
// with a header that says what it takes and prints. `make lint` checks them with
// sh -n and shellcheck. They take their inputs as arguments ($1...), never pasted
// into their text, and run as /bin/sh -c BODY NAME ARGS..., so that the process
// list, sh's messages and remotetest.Script name them.

//go:embed scripts/*.sh
var scriptFiles embed.FS

// script is one file of scripts/.
type script struct {
	name string // the file name, e.g. service-state.sh
	body string // the text without its header (remote.ScriptBody)
}

// loaded are the scripts loaded so far, by name.
var loaded = map[string]script{}

// loadScript reads scripts/name; a missing one is a programming error.
func loadScript(name string) script {
	b, err := scriptFiles.ReadFile(path.Join("scripts", name))
	if err != nil {
		panic("activities: " + err.Error())
	}
	s := script{name: name, body: remote.ScriptBody(string(b))}
	loaded[name] = s
	return s
}

// cmd is the command that runs the script with args.
func (s script) cmd(args ...string) remote.Cmd {
	return remote.Cmd{Argv: append([]string{"/bin/sh", "-c", s.body, s.name}, args...)}
}

var (
	fileStateScript        = loadScript("file-state.sh")
	fileReadScript         = loadScript("file-read.sh")
	fileWriteScript        = loadScript("file-write.sh")
	osDetectScript         = loadScript("os-detect.sh")
	dpkgAuditScript        = loadScript("dpkg-audit.sh")
	aptRepoScript          = loadScript("apt-repo.sh")
	dockerUsersScript      = loadScript("docker-users.sh")
	dockerSocketScript     = loadScript("docker-socket.sh")
	serviceStateScript     = loadScript("service-state.sh")
	serviceWaitScript      = loadScript("service-wait.sh")
	serviceStartScript     = loadScript("service-start.sh")
	serviceRestartScript   = loadScript("service-restart.sh")
	serviceLogScript       = loadScript("service-log.sh")
	hostKeysScript         = loadScript("host-keys.sh")
	meshVerifyScript       = loadScript("mesh-verify.sh")
	sshFileReadScript      = loadScript("ssh-file-read.sh")
	sshDirScript           = loadScript("ssh-dir.sh")
	consulPrepareScript    = loadScript("consul-prepare.sh")
	consulURLStateScript   = loadScript("consul-url-state.sh")
	consulURLInstallScript = loadScript("consul-url-install.sh")
	consulUnitScript       = loadScript("consul-unit.sh")
	enginePackageScript    = loadScript("engine-package.sh")
	swarmBackupScript      = loadScript("swarm-backup.sh")
	swarmCertsScript       = loadScript("swarm-certs.sh")
)
