// Command bench compares clusterflow with Ansible and with raw parallel ssh on this
// machine and prints a table of medians and same-run ratios (see docs/BENCHMARKS.md):
//
//  1. fan-out: one trivial command on 10, 100 and 500 loopback sshd hosts;
//  2. per-step overhead: 20 trivial steps on one host;
//  3. cluster bootstrap: docker.io and a swarm on 3 fresh lab nodes;
//  4. file transfer: 200 MB to a lab node, upload step against scp;
//  5. resume latency after a worker is killed;
//  6. (-only cluster, not by default) throughput of the embedded server on SQLite
//     against a cluster of two server processes on PostgreSQL (Debian's package).
//
// Run it from the repository root as root: `make bench` or `go run ./bench`. It
// installs what it compares against (Ansible, OpenSSH) with apt-get when missing,
// starts its own embedded Temporal server, workers and sshd processes, and stops them
// when it ends. The lab parts bring up a lab of their own (cf-bench-XXXXXX, beside any
// other lab, the user's included) and take it down afterwards. Traffic goes only to
// loopback and to that lab's containers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "fanout,steps,bootstrap,transfer,resume", "benchmarks to run, comma-separated (cluster: section 6, not run by default)")
	sizes := fs.String("sizes", "10,100,500", "fan-out host counts")
	rounds := fs.Int("rounds", 5, "measured runs per figure (medians are reported)")
	largeRounds := fs.Int("large-rounds", 3, "measured runs for fan-out sizes of 500 hosts and more, and the lab benchmarks")
	profile := fs.String("profile", "", "write a CPU profile of the worker during warm fan-out runs on the most hosts to this file")
	out := fs.String("out", "docs/BENCHMARKS.md", "Markdown file whose generated table is replaced (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-sizes: %q is not a host count", s)
		}
		ns = append(ns, n)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the sshd hosts log in as root and the lab needs the Docker engine")
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return fmt.Errorf("run from the repository root (go run ./bench)")
	}
	// Section 6 compares clusterflow with itself: it needs no Ansible.
	compares := want["fanout"] || want["steps"] || want["bootstrap"] || want["transfer"]
	if compares {
		if err := prereqs(stderr); err != nil {
			return err
		}
	}
	begin := time.Now()
	e, err := newEnv(ctx, stderr)
	if err != nil {
		return err
	}
	defer e.close()
	var a *ansible
	if compares {
		if a, err = newAnsible(filepath.Join(e.dir, "ansible")); err != nil {
			return err
		}
	}
	var t, ct table
	// A benchmark that fails is reported in the table and the others still run.
	var errs []error
	failed := func(section string, err error) {
		fmt.Fprintf(stderr, "%s failed: %v\n", section, err)
		t.add(section, "FAILED (see the log)", "", "", "")
		errs = append(errs, fmt.Errorf("%s: %w", section, err))
	}

	if want["fanout"] || want["steps"] || want["resume"] || want["cluster"] {
		most := 1
		if want["fanout"] {
			most = slices.Max(ns)
		}
		if want["cluster"] {
			most = max(most, clusterHosts)
		}
		created, err := ensureBenchUser()
		if err != nil {
			return err
		}
		if created {
			defer removeBenchUser()
		}
		// benchUser reads authorized_keys and writes the resume marker below here.
		if err := os.Chmod(e.dir, 0o711); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "starting %d loopback sshd hosts ...\n", most)
		f, err := startFleet(filepath.Join(e.dir, "fleet"), most)
		if err != nil {
			return err
		}
		defer f.stop()
		if want["fanout"] {
			for _, n := range ns {
				fmt.Fprintf(stderr, "1. fan-out on %d hosts\n", n)
				r := *rounds
				if n >= 500 {
					r = *largeRounds
				}
				prof := ""
				if n == slices.Max(ns) {
					prof = *profile
				}
				if err := benchFanOut(ctx, e, f, a, n, r, prof, &t); err != nil {
					failed(fmt.Sprintf("1. fan-out, %d hosts", n), err)
				}
			}
		}
		if want["steps"] {
			fmt.Fprintln(stderr, "2. per-step overhead")
			if err := benchSteps(ctx, e, f, a, *rounds, &t); err != nil {
				failed("2. steps", err)
			}
		}
		if want["resume"] {
			fmt.Fprintln(stderr, "5. resume latency")
			if err := benchResume(ctx, e, f, *rounds, &t); err != nil {
				failed("5. resume", err)
			}
		}
		if want["cluster"] {
			fmt.Fprintln(stderr, "6. throughput: SQLite embedded against a PostgreSQL cluster")
			if err := benchCluster(ctx, e, f, *largeRounds, &ct); err != nil {
				fmt.Fprintf(stderr, "6. cluster failed: %v\n", err)
				ct.add("6. cluster", "FAILED (see the log)", "", "", "")
				errs = append(errs, fmt.Errorf("6. cluster: %w", err))
			}
		}
	}
	if want["bootstrap"] || want["transfer"] {
		if err := benchLab(ctx, e, a, want["bootstrap"], want["transfer"], *largeRounds, &t); err != nil {
			failed("3./4. lab", err)
		}
	}

	host, _ := os.Hostname()
	header := fmt.Sprintf("Measured %s on %s (%d CPUs), %s, in %s. Medians; ratios are medians of per-round ratios.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), host, numCPU(), machineNote(), time.Since(begin).Round(time.Second))
	// Each table replaces its own part of the file, so that a run of one part
	// leaves the other's figures alone.
	for _, part := range []struct {
		t      *table
		marker string
	}{{&t, "bench"}, {&ct, "bench-cluster"}} {
		if len(part.t.rows) == 0 {
			continue
		}
		fmt.Fprintln(stdout)
		part.t.print(stdout)
		if *out != "" {
			if err := part.t.writeMarkdown(*out, part.marker, header); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "\nwritten to", *out)
		}
	}
	return errors.Join(errs...)
}
