// Command lab runs a local virtual cluster for clusterflow: Debian bookworm containers
// (master, slave01, slave02, ...) on a private Docker bridge network, each with its own
// sshd, its own host key and room to run its own Docker engine later. clusterflow
// procedures are proven against these nodes over real SSH.
//
// Usage, from the repository root:
//
//	go run ./lab up [--nodes N] [--prebaked]   create or resume the lab, write inventory
//	go run ./lab status                        one line per node
//	go run ./lab ssh NODE [-- CMD...]          system ssh into a node, strict host keys
//	go run ./lab images [--prebaked]           build the images only
//	go run ./lab repo                          the lab apt repository's package cache (made once)
//	go run ./lab consul                        the consul binary's path (built once, cached)
//	go run ./lab down                          remove the lab's containers, volumes and network
//	go run ./lab list                          every lab on this engine
//
// Every command takes --name NAME (or $CLUSTERFLOW_LAB) to act on another lab than
// the default clusterflow-lab; labs with different names live side by side. State (lab
// key, known_hosts, inventory.yaml) lives in .clusterflow/lab/ under the current
// directory (.clusterflow/labs/NAME/ for another lab), or under $CLUSTERFLOW_STATE_DIR
// instead of .clusterflow. See lab/README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var exit exitStatusError
		if errors.As(err, &exit) {
			os.Exit(exit.code)
		}
		fmt.Fprintf(os.Stderr, "lab: %v\n", err)
		if errors.As(err, new(subnetInUseError)) {
			os.Exit(exitSubnetInUse)
		}
		os.Exit(1)
	}
}
