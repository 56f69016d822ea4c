//go:build integration

package e2e

import (
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterflow/clusterflow/internal/pgtest"
)

// TestServerSchemaMigration starts `worker server` on an empty PostgreSQL (the
// schema is set up), takes the persistence schema back one version by hand (the
// last change set's table dropped, its version recorded as the one before), and
// starts it again: the server's schema tool applies the change set again and
// records the migration.
func TestServerSchemaMigration(t *testing.T) {
	pg := pgtest.New(t, pgtest.Options{NoFsync: true})
	c := &cluster{t: t, dir: t.TempDir(), logs: map[*exec.Cmd]*bytes.Buffer{}}
	t.Cleanup(c.stopAll)
	server := func() *exec.Cmd {
		port := freePort(t)
		cmd := c.start("server", "worker", "server", "--db", pg.URL("cfschema"), "--db-password-file", pg.PasswordFile,
			"--grpc-port", strconv.Itoa(port), "--ui-port", "0", "--history-shards", "2", "--state-dir", filepath.Join(c.dir, "state"))
		waitFor(t, 3*time.Minute, "the server to start", func() bool {
			if strings.Contains(c.logOf(cmd), "worker: ") {
				t.Fatalf("server exited:\n%s", c.logOf(cmd))
			}
			return strings.Contains(c.logOf(cmd), "Temporal server on "+net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		})
		return cmd
	}
	version := func(db string) string {
		out, err := pg.SQL(db, "SELECT curr_version FROM schema_version")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	stop := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}

	first := server()
	if v, vv := version("cfschema"), version("cfschema_visibility"); v != "1.19" || vv != "1.14" {
		t.Fatalf("new database: schema versions %s and %s; want 1.19 and 1.14 (server v1.32.1's)", v, vv)
	}
	if !strings.Contains(c.logOf(first), "2 history shards") {
		t.Errorf("server output lacks the shard count:\n%s", c.logOf(first))
	}
	stop(first)

	if _, err := pg.SQL("cfschema", "DROP TABLE current_chasm_executions; UPDATE schema_version SET curr_version = '1.18'"); err != nil {
		t.Fatal(err)
	}
	stop(server())
	if v := version("cfschema"); v != "1.19" {
		t.Fatalf("after the restart: schema version %s; want 1.19", v)
	}
	if _, err := pg.SQL("cfschema", "SELECT count(*) FROM current_chasm_executions"); err != nil {
		t.Fatalf("the migration did not create current_chasm_executions again: %v", err)
	}
	log, err := pg.SQL("cfschema", "SELECT old_version || '->' || new_version FROM schema_update_history ORDER BY update_time")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(log, "1.18->1.19") {
		t.Errorf("schema update history:\n%s\nwant it to end with 1.18->1.19", log)
	}
	t.Logf("schema update history of the persistence database:\n%s", log)
}
