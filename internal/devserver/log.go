package devserver

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// slogAdapter turns the server's tag-based logger calls into slog records,
// dropping those below a level that can be raised at shutdown.
type slogAdapter struct {
	log   *slog.Logger
	level *slog.LevelVar
}

var _ log.Logger = slogAdapter{}

func newLogger(l *slog.Logger, level *slog.LevelVar) slogAdapter {
	return slogAdapter{log: l.With("component", "temporal-server"), level: level}
}

// expected are warnings about what clusterflow sets up that way on purpose.
var expected = []string{
	"HTTP API port has not been set", // the HTTP API is off unless asked for (Nexus needs it; clusterflow uses none)
}

func (a slogAdapter) emit(level slog.Level, msg string, tags []tag.Tag) {
	if level == slog.LevelWarn && slices.ContainsFunc(expected, func(p string) bool { return strings.HasPrefix(msg, p) }) {
		level = slog.LevelInfo
	}
	if level < a.level.Level() {
		return
	}
	attrs := make([]slog.Attr, 0, len(tags))
	for _, t := range tags {
		attrs = append(attrs, slog.Any(t.Key(), t.Value()))
	}
	a.log.LogAttrs(context.Background(), level, msg, attrs...)
}

func (a slogAdapter) Debug(msg string, tags ...tag.Tag)  { a.emit(slog.LevelDebug, msg, tags) }
func (a slogAdapter) Info(msg string, tags ...tag.Tag)   { a.emit(slog.LevelInfo, msg, tags) }
func (a slogAdapter) Warn(msg string, tags ...tag.Tag)   { a.emit(slog.LevelWarn, msg, tags) }
func (a slogAdapter) Error(msg string, tags ...tag.Tag)  { a.emit(slog.LevelError, msg, tags) }
func (a slogAdapter) DPanic(msg string, tags ...tag.Tag) { a.emit(slog.LevelError, msg, tags) }
func (a slogAdapter) Panic(msg string, tags ...tag.Tag)  { a.emit(slog.LevelError, msg, tags) }
func (a slogAdapter) Fatal(msg string, tags ...tag.Tag)  { a.emit(slog.LevelError, msg, tags) }
