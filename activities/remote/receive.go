package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// This file writes files on hosts: the content streams over one exec session into
// receive.sh, which writes and hashes it in the same pass, while the worker hashes
// what it sends. Neither side reads the data twice, and the file is renamed into
// place only when both checksums agree.

//go:embed receive.sh
var receiveFile string

var receiveScript = ScriptBody(receiveFile)

// copyBuffer is the size of the reads from the content while it is sent.
const copyBuffer = 256 << 10

// WriteFile makes dest on h hold src with attributes a, atomically (see FS), and
// returns the content's SHA-256 (hex).
func (p *Pool) WriteFile(ctx context.Context, h Host, dest string, src Content, a Attrs, sent *atomic.Int64) (string, error) {
	if sent == nil {
		sent = new(atomic.Int64)
	}
	r, size, err := src.openSized()
	if err != nil {
		return "", invalid(h, "upload src: %v", err)
	}
	defer r.Close()
	want := src.SHA256
	if want == "" {
		want = "-"
	}
	tmp := path.Join(path.Dir(dest), "."+path.Base(dest)+".clusterflow-tmp-"+randomSuffix())
	c := Cmd{Argv: []string{"/bin/sh", "-c", receiveScript, "receive.sh", dest, tmp, strconv.FormatInt(size, 10), want,
		fmt.Sprintf("%04o", a.Mode), a.Owner, a.Group}, Sudo: h.Sudo}
	hash := sha256.New()
	out, err := p.receive(ctx, h, dest, c, &countingReader{r: io.TeeReader(r, hash), n: sent})
	if err != nil {
		return "", err
	}
	sum := hex.EncodeToString(hash.Sum(nil))
	switch {
	case out.renamed:
		// The host checked its copy against src.SHA256, the checksum the caller
		// gave, and renamed it.
		return out.sum, nil
	case out.sum != sum || out.size != sent.Load():
		p.removeTemp(ctx, h, tmp)
		return "", hostErr(h, Mismatch, "writing %s: the host's copy (%d bytes) differs from the %d bytes sent", dest, out.size, sent.Load())
	}
	if err := p.helper(ctx, h, "renaming the uploaded file onto "+dest, []string{"mv", "-f", "--", tmp, dest}); err != nil {
		p.removeTemp(ctx, h, tmp)
		return "", err
	}
	return sum, nil
}

// received is what receive.sh reported.
type received struct {
	size    int64
	sum     string
	renamed bool
}

// receive runs receive.sh (c) with stdin as its input and reads its report.
func (p *Pool) receive(ctx context.Context, h Host, dest string, c Cmd, stdin io.Reader) (received, error) {
	line, err := c.directLine()
	if err != nil {
		return received{}, invalid(h, "%v", err)
	}
	sess, err := p.session(ctx, h)
	if err != nil {
		return received{}, err
	}
	defer sess.close()
	var stdout bytes.Buffer
	stderr := newTailBuffer(TailMax)
	sess.Stdout, sess.Stderr = &stdout, stderr
	in, err := sess.StdinPipe()
	if err != nil {
		return received{}, unreachable(h, "cannot set up the session: %v", err)
	}
	if err := sess.Start(line); err != nil {
		sess.broken(fmt.Sprintf("exec request failed: %v", err))
		return received{}, unreachable(h, "cannot start the transfer: %v", err)
	}
	copied := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(in, stdin, make([]byte, copyBuffer))
		// The end of the input tells receive.sh that everything was sent; a
		// short input makes it remove its file.
		in.Close()
		copied <- err
	}()
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	var waitErr error
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		// Closing the channel ends the input early: receive.sh removes its file.
		sess.Close()
		select {
		case <-done:
		case <-time.After(cancelGrace):
		}
		return received{}, ctx.Err()
	}
	copyErr := <-copied
	var exitErr *ssh.ExitError
	switch {
	case errors.As(waitErr, &exitErr) && exitErr.ExitStatus() == 6:
		return received{}, hostErr(h, Mismatch, "writing %s: the host's copy differs from the content's checksum (did the source change while it was sent?)", dest)
	case errors.As(waitErr, &exitErr):
		if copyErr != nil && !errors.Is(copyErr, io.EOF) && exitErr.ExitStatus() == 4 {
			return received{}, invalid(h, "reading the upload's source: %v", copyErr)
		}
		return received{}, refused(h, "writing the file failed (exit %d): %s", exitErr.ExitStatus(), strings.TrimSpace(stderr.String()))
	case waitErr != nil:
		sess.broken(fmt.Sprintf("session ended without exit status: %v", waitErr))
		return received{}, unreachable(h, "the connection was lost during the transfer (%v)", waitErr)
	case copyErr != nil:
		return received{}, invalid(h, "reading the upload's source: %v", copyErr)
	}
	return parseReceived(h, stdout.String())
}

// parseReceived reads receive.sh's "size N", "sha256 HEX" and "renamed" lines.
func parseReceived(h Host, out string) (received, error) {
	var r received
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return received{}, refused(h, "unexpected output of the transfer: %q", out)
			}
			r.size = n
		case "sha256":
			r.sum = v
		case "renamed":
			r.renamed = true
		}
	}
	if len(r.sum) != sha256.Size*2 {
		return received{}, refused(h, "unexpected output of the transfer: %q", out)
	}
	return r, nil
}

// removeTemp deletes a temporary file, best effort, also after a cancellation.
func (p *Pool) removeTemp(ctx context.Context, h Host, tmp string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	_, _ = p.Run(rctx, h, Cmd{Argv: []string{"rm", "-f", "--", tmp}, Sudo: h.Sudo})
}
