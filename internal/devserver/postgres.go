package devserver

import (
	"fmt"
	"maps"
	"time"

	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	persistencesql "go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	postgresplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	"go.temporal.io/server/common/resolver"
	postgresschema "go.temporal.io/server/schema/postgresql/v12"
	"go.temporal.io/server/tools/common/schema"
	sqltool "go.temporal.io/server/tools/sql"

	cfconfig "github.com/clusterflow/clusterflow/internal/config"
)

// The server's embedded schema directories (go.temporal.io/server/schema) that
// temporal-sql-tool's setup-schema and update-schema take as --schema-name.
const (
	pgSchema           = "postgresql/v12/temporal"
	pgVisibilitySchema = "postgresql/v12/visibility"
)

// schemaLock is the PostgreSQL advisory lock key held while the schema is set up or
// migrated, so that servers starting together on a new database take turns.
// ("clusterflow" in ASCII, folded into 63 bits.)
const schemaLock = 0x636c7573746572

// preparePostgres gets the two databases ready for this server: created when missing
// (which needs the CREATEDB privilege; otherwise create them beforehand), their
// schema set up on a new database and migrated to this server version's on an older
// one, both with the server's own SQL schema tool (what temporal-sql-tool
// setup-schema -v 0.0 and update-schema do), while holding an advisory lock. The
// caller releases the lock (unlock) once the server has been built: building it
// writes the cluster metadata on a new database, and Temporal fails the second of
// two servers that do that at once ("SaveClusterMetadata encountered version
// mismatch").
func preparePostgres(o Options, logger log.Logger) (store, visibility *config.SQL, unlock func(), err error) {
	store = sqlConfig(o.Postgres, o.Postgres.Database)
	visibility = sqlConfig(o.Postgres, o.Postgres.VisibilityDatabase)
	for _, db := range []*config.SQL{store, visibility} {
		if err := ensureDatabase(db, o.Postgres, logger); err != nil {
			return nil, nil, nil, err
		}
	}
	if unlock, err = lockSchema(store, logger); err != nil {
		return nil, nil, nil, err
	}
	if err := migrate(store, pgSchema, postgresschema.Version, logger); err != nil {
		unlock()
		return nil, nil, nil, err
	}
	if err := migrate(visibility, pgVisibilitySchema, postgresschema.VisibilityVersion, logger); err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return store, visibility, unlock, nil
}

// sqlConfig is the server's connection to one of the databases. The pgx driver
// (postgres12_pgx) is the maintained one of the two the server offers; lib/pq,
// behind postgres12, is in maintenance mode.
func sqlConfig(p *cfconfig.Postgres, database string) *config.SQL {
	return &config.SQL{
		PluginName:        postgresplugin.PluginNamePGX,
		DatabaseName:      database,
		ConnectAddr:       p.Addr,
		ConnectProtocol:   "tcp",
		User:              p.User,
		Password:          p.Password,
		ConnectAttributes: maps.Clone(p.Params),
		MaxConns:          p.MaxConns,
		MaxIdleConns:      p.MaxConns,
	}
}

// ensureDatabase creates the database when it cannot be connected to, through the
// maintenance database "postgres" (as temporal-sql-tool create-database does).
// Servers starting together race to create it; the loser's CREATE fails (on a
// unique index, before the winner commits), so it tries again for a while.
func ensureDatabase(db *config.SQL, p *cfconfig.Postgres, logger log.Logger) error {
	// Probes log their failures as errors; the one that matters is returned.
	quiet := log.NewNoopLogger()
	var connErr, createErr error
	for try := 0; try < 10; try++ {
		if connErr = ping(db, quiet); connErr == nil {
			return nil
		}
		if try > 0 {
			time.Sleep(time.Second)
		}
		target := *db
		if createErr = sqltool.DoCreateDatabase(&target, "postgres", quiet); createErr == nil {
			logger.Info("created database " + db.DatabaseName)
		}
	}
	return fmt.Errorf("embedded temporal: database %s on %s as %s: cannot connect (%v), and creating it failed (%v): "+
		"check the address, user and password, or create the database beforehand (CREATE DATABASE %s OWNER %s)",
		db.DatabaseName, p.Addr, p.User, connErr, createErr, db.DatabaseName, p.User)
}

func ping(db *config.SQL, logger log.Logger) error {
	conn, err := sqltool.NewConnection(db, logger)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Exec("SELECT 1")
}

// lockSchema takes the schema advisory lock on a connection of its own (the lock
// belongs to the session that took it; the pool has that one connection) and
// returns what releases it.
func lockSchema(store *config.SQL, logger log.Logger) (unlock func(), err error) {
	one := *store
	one.MaxConns, one.MaxIdleConns = 1, 1
	db, err := persistencesql.NewSQLAdminDB(sqlplugin.DbKindMain, &one, resolver.NewNoopResolver(), logger, metrics.NoopMetricsHandler)
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: database %s: %w", store.DatabaseName, err)
	}
	if err := db.Exec("SELECT pg_advisory_lock($1)", schemaLock); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("embedded temporal: database %s: taking the schema lock: %w", store.DatabaseName, err)
	}
	return func() {
		_ = db.Exec("SELECT pg_advisory_unlock($1)", schemaLock)
		_ = db.Close() // ending the session releases the lock in any case
	}, nil
}

// migrate brings one database's schema to want with the server's schema tool:
// version tables and version 0.0 on a new database, then every versioned change set
// of the embedded schema directory above the database's version. It is a no-op on
// a database already at want.
func migrate(db *config.SQL, schemaName, want string, logger log.Logger) error {
	conn, err := sqltool.NewConnection(db, logger)
	if err != nil {
		return fmt.Errorf("embedded temporal: database %s: %w", db.DatabaseName, err)
	}
	defer conn.Close()
	if err := schema.NewSetupSchemaTask(conn, &schema.SetupConfig{InitialVersion: "0.0"}, logger).Run(); err != nil {
		return fmt.Errorf("embedded temporal: database %s: setting up the schema version tables: %w", db.DatabaseName, err)
	}
	update := &schema.UpdateConfig{DBName: db.DatabaseName, SchemaName: schemaName}
	if err := schema.NewUpdateSchemaTask(conn, update, logger).Run(); err != nil {
		return fmt.Errorf("embedded temporal: database %s: migrating the schema (%s) to %s: %w", db.DatabaseName, schemaName, want, err)
	}
	have, err := conn.ReadSchemaVersion()
	if err != nil {
		return fmt.Errorf("embedded temporal: database %s: reading the schema version: %w", db.DatabaseName, err)
	}
	if have != want {
		// Newer than this server knows (a newer clusterflow migrated it): the
		// server refuses only older schemas, so this one may run, but say so.
		logger.Warn(fmt.Sprintf("database %s has schema version %s; this server's is %s", db.DatabaseName, have, want))
	}
	return nil
}
