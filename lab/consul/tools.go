//go:build tools

// Package labconsul only pins the consul command for `go build`.
package labconsul

import _ "github.com/hashicorp/consul"
