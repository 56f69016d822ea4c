package activities

import (
	"context"
	"io/fs"
	"sync/atomic"

	"github.com/docker/docker/client"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// typedRemote is the remote layer as the activities use it: the same calls, with
// every error already of its Temporal type (typed), so that an activity can
// return it as it is.
type typedRemote struct{ r remote.Remote }

func (t typedRemote) run(ctx context.Context, h remote.Host, c remote.Cmd) (remote.Result, error) {
	res, err := t.r.Run(ctx, h, c)
	return res, typed(err)
}

func (t typedRemote) capture(ctx context.Context, h remote.Host, c remote.Cmd, limit int) ([]byte, remote.Result, error) {
	out, res, err := t.r.Capture(ctx, h, c, limit)
	return out, res, typed(err)
}

func (t typedRemote) readFile(ctx context.Context, h remote.Host, p string, limit int64) ([]byte, error) {
	b, err := t.r.ReadFile(ctx, h, p, limit)
	return b, typed(err)
}

func (t typedRemote) writeFile(ctx context.Context, h remote.Host, p string, src remote.Content, a remote.Attrs, sent *atomic.Int64) (string, error) {
	sum, err := t.r.WriteFile(ctx, h, p, src, a, sent)
	return sum, typed(err)
}

func (t typedRemote) mkdirAll(ctx context.Context, h remote.Host, dir string, mode fs.FileMode) (string, error) {
	abs, err := t.r.MkdirAll(ctx, h, dir, mode)
	return abs, typed(err)
}

// dial opens a connection outside the pool (see remote.Remote.Dial).
func (t typedRemote) dial(ctx context.Context, h remote.Host) (typedConn, error) {
	c, err := t.r.Dial(ctx, h)
	return typedConn{c}, typed(err)
}

// dockerAPI is a client of h's Docker Engine API over h's pooled connection.
func (t typedRemote) dockerAPI(h remote.Host) (*client.Client, error) {
	cli, err := remote.DockerAPI(t.r, h, remote.DockerSocket)
	if err != nil {
		return nil, hostInvalid(h, "docker client: %v", err)
	}
	return cli, nil
}

// typedConn is a remote.Conn whose errors are typed.
type typedConn struct{ c remote.Conn }

func (t typedConn) run(ctx context.Context, c remote.Cmd) (remote.Result, error) {
	res, err := t.c.Run(ctx, c)
	return res, typed(err)
}

func (t typedConn) Close() error { return t.c.Close() }

// files is the worker's file policy, which the pool carries (remote.Pool.Files):
// every worker file a request names is checked against it before it is opened. A
// remote without one (a test's fake) allows every path.
func (t typedRemote) files() *workerfs.Policy {
	if p, ok := t.r.(interface{ Files() *workerfs.Policy }); ok {
		return p.Files()
	}
	return workerfs.Unrestricted()
}

// workerFile checks a worker path a request names (field, for the message) against
// the file policy, for a class of use (workerfs.Content to read and send it,
// workerfs.Write to make or replace it). The refusal reads the same whether the
// file exists or not.
func (t typedRemote) workerFile(field, p string, class workerfs.Class) error {
	if err := t.files().Check(p, class); err != nil {
		return invalidInput(field + ": " + err.Error())
	}
	return nil
}
