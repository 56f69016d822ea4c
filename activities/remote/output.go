package remote

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// tailBuffer keeps the last bytes written to it, up to a limit, and counts what it
// dropped. Output goes into workflow history, so it must stay small.
type tailBuffer struct {
	mu      sync.Mutex
	limit   int
	buf     []byte // the tail; never longer than 2*limit between compactions
	dropped int64
}

func newTailBuffer(limit int) *tailBuffer {
	return &tailBuffer{limit: limit}
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > t.limit {
		t.dropped += int64(len(p) - t.limit)
		p = p[len(p)-t.limit:]
	}
	t.buf = append(t.buf, p...)
	// Compact only when the buffer has doubled, so that many small writes copy
	// each byte a bounded number of times.
	if len(t.buf) > 2*t.limit {
		cut := len(t.buf) - t.limit
		t.dropped += int64(cut)
		t.buf = append(t.buf[:0], t.buf[cut:]...)
	}
	return n, nil
}

// String returns at most limit bytes of valid UTF-8 (invalid bytes become U+FFFD).
// When earlier output was dropped, it starts with a marker saying about how much,
// and the kept part starts on a character boundary.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	raw := t.buf
	dropped := t.dropped
	if dropped > 0 {
		// Skip the rest of a character cut in half by an earlier drop.
		for i := 0; i < utf8.UTFMax && len(raw) > 0 && !utf8.RuneStart(raw[0]); i++ {
			raw = raw[1:]
			dropped++
		}
	}
	text := strings.ToValidUTF8(string(raw), "\uFFFD")
	if dropped == 0 && len(text) <= t.limit {
		return text
	}
	// Size the marker for the largest count it can show, then cut the text to fit.
	marker := func(n int64) string { return fmt.Sprintf("[clusterflow: %d earlier bytes not kept]\n", n) }
	keep := max(t.limit-len(marker(dropped+int64(len(text)))), 0)
	if cut := len(text) - keep; cut > 0 {
		for cut < len(text) && !utf8.RuneStart(text[cut]) {
			cut++
		}
		dropped += int64(cut)
		text = text[cut:]
	}
	return marker(dropped) + text
}

// lineTracker remembers the last non-empty line written (complete or not), capped,
// for heartbeat details.
type lineTracker struct {
	mu      sync.Mutex
	partial []byte
	last    []byte
}

const lineTrackerMax = 200

func (l *lineTracker) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = appendCapped(l.partial, p)
			break
		}
		l.partial = appendCapped(l.partial, p[:i])
		if line := bytes.TrimSpace(l.partial); len(line) > 0 {
			l.last = append(l.last[:0], line...)
		}
		l.partial = l.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func appendCapped(dst, p []byte) []byte {
	if room := lineTrackerMax - len(dst); room < len(p) {
		p = p[:max(room, 0)]
	}
	return append(dst, p...)
}

func (l *lineTracker) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	line := l.last
	if p := bytes.TrimSpace(l.partial); len(p) > 0 {
		line = p
	}
	return strings.ToValidUTF8(string(line), "\uFFFD")
}

// outputSink collects both streams into bounded tails and remembers the last line
// written to either, for progress reports.
type outputSink struct {
	out, err *tailBuffer
	last     lineTracker
}

func newOutputSink(limit int) *outputSink {
	return &outputSink{out: newTailBuffer(limit), err: newTailBuffer(limit)}
}

func (o *outputSink) stdout() io.Writer { return io.MultiWriter(o.out, &o.last) }
func (o *outputSink) stderr() io.Writer { return io.MultiWriter(o.err, &o.last) }
func (o *outputSink) lastLine() string  { return o.last.String() }

// capBuffer keeps what is written up to limit bytes and notes any excess.
type capBuffer struct {
	buf   bytes.Buffer
	limit int
	over  bool
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := c.limit - c.buf.Len(); len(p) > room {
		c.over = true
		c.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.buf.Write(p)
}
