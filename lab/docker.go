package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// connectDocker returns a client of the local engine (DOCKER_HOST or the default unix
// socket) that negotiates the API version, and checks that the engine answers.
func connectDocker(ctx context.Context) (*client.Client, error) {
	cli, err := client.NewClientWithOpts(
		client.WithHostFromEnv(),
		client.WithTLSClientConfigFromEnv(),
		client.WithAPIVersionNegotiation(),
	)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(pingCtx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("no Docker engine answers at %s (run lab/prereqs.sh to install and start one): %w", cli.DaemonHost(), err)
	}
	return cli, nil
}

// labFilter selects the objects of the named lab by their label.
func labFilter(name string) filters.Args {
	return filters.NewArgs(filters.Arg("label", labelLab+"="+name))
}

// execResult is what a command run in a container left behind.
type execResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// execIn runs argv in a running container as root, with stdin when it is not nil, and
// waits for it. A non-zero exit status is not an error: callers read ExitCode.
func execIn(ctx context.Context, cli *client.Client, containerName string, stdin io.Reader, argv ...string) (execResult, error) {
	created, err := cli.ContainerExecCreate(ctx, containerName, container.ExecOptions{
		User:         "root",
		Cmd:          argv,
		AttachStdin:  stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
	})
	if err != nil {
		return execResult{}, fmt.Errorf("exec %s in %s: %w", argv[0], containerName, err)
	}
	att, err := cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return execResult{}, fmt.Errorf("exec %s in %s: attach: %w", argv[0], containerName, err)
	}
	defer att.Close()
	if stdin != nil {
		go func() {
			_, _ = io.Copy(att.Conn, stdin)
			_ = att.CloseWrite()
		}()
	}
	var stdout, stderr bytes.Buffer
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader)
		copied <- err
	}()
	select {
	case err = <-copied:
	case <-ctx.Done():
		return execResult{}, fmt.Errorf("exec %s in %s: %w", argv[0], containerName, ctx.Err())
	}
	if err != nil {
		return execResult{}, fmt.Errorf("exec %s in %s: read output: %w", argv[0], containerName, err)
	}
	// The output ends when the process does; the engine may record the exit a moment later.
	for i := 0; ; i++ {
		ins, err := cli.ContainerExecInspect(ctx, created.ID)
		if err != nil {
			return execResult{}, fmt.Errorf("exec %s in %s: inspect: %w", argv[0], containerName, err)
		}
		if !ins.Running || i == 50 {
			return execResult{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: ins.ExitCode}, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// execOK runs argv like execIn and turns a non-zero exit status into an error that
// carries the command's stderr.
func execOK(ctx context.Context, cli *client.Client, containerName string, argv ...string) (string, error) {
	res, err := execIn(ctx, cli, containerName, nil, argv...)
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		msg := strings.TrimSpace(res.Stderr)
		if msg == "" {
			msg = strings.TrimSpace(res.Stdout)
		}
		return res.Stdout, fmt.Errorf("%s in %s: exit status %d: %s", argv[0], containerName, res.ExitCode, msg)
	}
	return res.Stdout, nil
}

// streamMessage is one line of the JSON stream that image build and import answer with.
type streamMessage struct {
	Stream      string `json:"stream"`
	Status      string `json:"status"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// readStream consumes an engine JSON message stream, copying its text to w (which may be
// io.Discard) and keeping the last lines for the error it returns when the stream
// reports one.
func readStream(r io.Reader, w io.Writer) error {
	dec := json.NewDecoder(r)
	var tail []string
	keep := func(s string) {
		for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
			tail = append(tail, line)
			if len(tail) > 25 {
				tail = tail[1:]
			}
		}
	}
	for {
		var m streamMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read engine output: %w", err)
		}
		switch {
		case m.Error != "" || m.ErrorDetail != nil:
			msg := m.Error
			if msg == "" {
				msg = m.ErrorDetail.Message
			}
			return fmt.Errorf("%s\n--- last output ---\n%s", msg, strings.Join(tail, "\n"))
		case m.Stream != "":
			keep(m.Stream)
			_, _ = io.WriteString(w, m.Stream)
		case m.Status != "":
			keep(m.Status)
			_, _ = io.WriteString(w, m.Status+"\n")
		}
	}
}
