package remote

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/clusterflow/clusterflow/internal/rules"
)

// Host key policies: how a host's key is checked against its known_hosts file.
const (
	HostKeyStrict = "strict" // the host must be in known_hosts already (the default)
	HostKeyTOFU   = "tofu"   // the first key seen is pinned in known_hosts, enforced afterwards
)

// Host is how to reach one host: where it is, who to log in as, with which
// credentials, whom to trust, and through which jump host. The playbook loader
// fills it from the inventory (the workflows convert its hosts); the JSON field
// names are those of the inventory's, and of the activity inputs recorded in
// workflow histories, so they must not change.
//
// Name and Groups are not needed to connect: Name labels the host in messages,
// Groups are what upload templates see.
type Host struct {
	Name           string   `json:"name"`
	Address        string   `json:"address"`
	Port           int      `json:"port"`
	User           string   `json:"user"`
	IdentityFile   string   `json:"identityFile,omitempty"` // absolute path on the worker
	UseAgent       bool     `json:"useAgent,omitempty"`     // SSH_AUTH_SOCK of the worker
	Sudo           bool     `json:"sudo,omitempty"`         // run commands through sudo -n
	Groups         []string `json:"groups,omitempty"`
	KnownHostsFile string   `json:"knownHostsFile"` // absolute path on the worker
	HostKeyPolicy  string   `json:"hostKeyPolicy"`  // HostKeyStrict (also when empty) or HostKeyTOFU
	// Jump names the inventory host to connect through; Via is that host.
	Jump string `json:"jump,omitempty"`
	Via  *Host  `json:"via,omitempty"`
}

// Label names the host in messages: `host master (127.0.0.2:22)`.
func (h Host) Label() string {
	addr := h.Addr()
	if !rules.HostAddress(h.Address) { // an input to refuse: shown escaped
		addr = quoteField(h.Address)
	}
	if h.Name == "" {
		return "host " + addr
	}
	name := h.Name
	if strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) || len(name) > 100 {
		name = quoteField(name)
	}
	return fmt.Sprintf("host %s (%s)", name, addr)
}

// Addr is the host's "address:port", the form used for dialling and for known_hosts
// look-ups. A zero port means 22.
func (h Host) Addr() string {
	return net.JoinHostPort(h.Address, strconv.Itoa(h.PortOrDefault()))
}

// PortOrDefault is the host's port, 22 when unset.
func (h Host) PortOrDefault() int {
	if h.Port == 0 {
		return 22
	}
	return h.Port
}

// Validate checks the fields a connection relies on, through the jump chain. The
// playbook loader applies the defaults (port 22, strict); zero values are tolerated
// here too. Errors are of kind Invalid.
func (h Host) Validate() error { return h.validate(0) }

func (h Host) validate(depth int) error {
	switch {
	case h.Address == "":
		return invalid(h, "address is empty")
	case !rules.HostAddress(h.Address):
		return invalid(h, "address %s is not %s", quoteField(h.Address), rules.HostAddressRule)
	case h.User == "":
		return invalid(h, "user is empty")
	case !rules.UserName(h.User):
		return invalid(h, "user %s is not a user name (%s)", quoteField(h.User), rules.UserNameRule)
	case h.Port < 0 || h.Port > 65535:
		return invalid(h, "port %d is out of range", h.Port)
	case h.KnownHostsFile == "":
		return invalid(h, "knownHostsFile is empty: clusterflow never connects without checking host keys")
	case !rules.WorkerPath(h.KnownHostsFile):
		return invalid(h, "knownHostsFile %s must be %s on the worker", quoteField(h.KnownHostsFile), rules.WorkerPathRule)
	case h.IdentityFile != "" && !rules.WorkerPath(h.IdentityFile):
		return invalid(h, "identityFile %s must be %s on the worker", quoteField(h.IdentityFile), rules.WorkerPathRule)
	case h.HostKeyPolicy != "" && h.HostKeyPolicy != HostKeyStrict && h.HostKeyPolicy != HostKeyTOFU:
		return invalid(h, "hostKeyPolicy %s is not %q or %q", quoteField(h.HostKeyPolicy), HostKeyStrict, HostKeyTOFU)
	case depth > 4:
		return invalid(h, "jump chain is longer than 4 hosts (a loop?)")
	}
	if h.Via != nil {
		return h.Via.validate(depth + 1)
	}
	return nil
}

// quoteField quotes an input value for a message: escaped, at most 100 bytes.
func quoteField(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return strconv.Quote(s)
}

// poolKey identifies a connection: everything that decides who we are and whom we
// trust (see Pool).
func (h Host) poolKey() string {
	policy := h.HostKeyPolicy
	if policy == "" {
		policy = HostKeyStrict
	}
	k := fmt.Sprintf("%s@%s id=%s agent=%t known=%s policy=%s", h.User, h.Addr(), h.IdentityFile, h.UseAgent, h.KnownHostsFile, policy)
	if h.Via != nil {
		k += " via " + h.Via.poolKey()
	}
	return k
}

func (h Host) viaAddr() string {
	if h.Via == nil {
		return ""
	}
	return h.Via.Addr()
}
