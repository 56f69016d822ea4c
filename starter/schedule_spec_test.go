package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

func TestParseSpan(t *testing.T) {
	day := 24 * time.Hour
	for in, want := range map[string]time.Duration{
		"30s": 30 * time.Second, "15m": 15 * time.Minute, "6h30m": 6*time.Hour + 30*time.Minute,
		"90d": 90 * day, "1d12h": day + 12*time.Hour, "0s": 0, "0d": 0, " 7d ": 7 * day,
	} {
		got, err := parseSpan("every", in)
		if err != nil || got != want {
			t.Errorf("parseSpan(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5", "5x", "d", "-5s", "1d-3h", "+1h", "1.5d", "90 d", "99999999d"} {
		if got, err := parseSpan("every", in); err == nil {
			t.Errorf("parseSpan(%q) = %s, want an error", in, got)
		} else if !strings.Contains(err.Error(), "--every") {
			t.Errorf("parseSpan(%q): the error does not name the flag: %v", in, err)
		}
	}
}

func TestSpanText(t *testing.T) {
	day := 24 * time.Hour
	for d, want := range map[time.Duration]string{
		5 * time.Second: "5s", 90 * time.Second: "1m30s", 6 * time.Hour: "6h", 12*time.Hour + 30*time.Minute: "12h30m",
		90 * day: "90d", day + 12*time.Hour: "1d12h", 7*day + 90*time.Minute: "7d1h30m",
	} {
		if got := spanText(d); got != want {
			t.Errorf("spanText(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestTimingResolve(t *testing.T) {
	st, err := timing{cron: []string{"0 6 * * MON", "0 12 * * MON-WED,FRI"}, jitter: "10m", overlap: "skip"}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.spec.CronExpressions) != 2 || st.spec.CronExpressions[1] != "0 12 * * MON-WED,FRI" || st.spec.Jitter != 10*time.Minute {
		t.Errorf("cron spec: %+v", st.spec)
	}
	if st.overlap != enumspb.SCHEDULE_OVERLAP_POLICY_SKIP || st.catchup != 0 {
		t.Errorf("policies: overlap %s, catch-up %s", st.overlap, st.catchup)
	}
	if want := `cron "0 6 * * MON", cron "0 12 * * MON-WED,FRI", jitter 10m`; st.text != want {
		t.Errorf("text %q, want %q", st.text, want)
	}

	st, err = timing{every: "90d", offset: "6h", catchup: "24h", overlap: "buffer-one", timezone: "Europe/Berlin"}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := client.ScheduleIntervalSpec{Every: 90 * 24 * time.Hour, Offset: 6 * time.Hour}
	if len(st.spec.Intervals) != 1 || st.spec.Intervals[0] != want || st.spec.TimeZoneName != "Europe/Berlin" {
		t.Errorf("interval spec: %+v", st.spec)
	}
	if st.overlap != enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE || st.catchup != 24*time.Hour {
		t.Errorf("policies: overlap %s, catch-up %s", st.overlap, st.catchup)
	}
	if st.text != "every 90d (offset 6h), in Europe/Berlin" {
		t.Errorf("text %q", st.text)
	}

	// An empty --overlap is the default: skip.
	if st, err := (timing{every: "5s"}).resolve(); err != nil || st.overlap != enumspb.SCHEDULE_OVERLAP_POLICY_SKIP {
		t.Errorf("default overlap: %s, %v", st.overlap, err)
	}

	for _, bad := range []struct {
		timing
		want string
	}{
		{timing{}, "--cron"},
		{timing{cron: []string{"  "}}, "empty"},
		{timing{cron: []string{"0 6 *"}}, "5 fields"},
		{timing{every: "soon"}, "--every"},
		{timing{every: "500ms"}, "at least 1s"},
		{timing{every: "1h", offset: "1h"}, "shorter"},
		{timing{cron: []string{"@daily"}, offset: "1h"}, "--offset needs --every"},
		{timing{every: "1h", jitter: "a bit"}, "--jitter"},
		{timing{every: "1h", catchup: "5s"}, "minimum"},
		{timing{every: "1h", timezone: "Mars/Olympus"}, "--timezone"},
		{timing{every: "1h", overlap: "queue"}, "buffer-one"},
	} {
		if _, err := bad.resolve(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", bad.timing, err, bad.want)
		}
	}
}

func TestOverlapNames(t *testing.T) {
	for _, o := range overlapPolicies {
		p, err := parseOverlap(o.name)
		if err != nil || p != o.policy || overlapName(p) != o.name {
			t.Errorf("%s: %s, %v, back %s", o.name, p, err, overlapName(p))
		}
	}
	if p, err := parseOverlap(""); err != nil || p != enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED || overlapName(p) != "skip" {
		t.Errorf("empty: %s, %v", p, err)
	}
}

func TestCalendarText(t *testing.T) {
	// What the server makes of "0 12 * * MON-WED,FRI".
	c := client.ScheduleCalendarSpec{
		Second:     []client.ScheduleRange{{Start: 0}},
		Minute:     []client.ScheduleRange{{Start: 0}},
		Hour:       []client.ScheduleRange{{Start: 12}},
		DayOfMonth: []client.ScheduleRange{{Start: 1, End: 31}},
		Month:      []client.ScheduleRange{{Start: 1, End: 12}},
		DayOfWeek:  []client.ScheduleRange{{Start: 1, End: 3}, {Start: 5}},
	}
	if got, want := calendarText(c), `"0 0 12 * * 1-3,5 *"`; got != want {
		t.Errorf("calendarText = %s, want %s", got, want)
	}
	c.Minute = []client.ScheduleRange{{Start: 0, End: 59, Step: 15}}
	c.Comment = "quarter hours"
	if got, want := calendarText(c), `"0 */15 12 * * 1-3,5 *" (quarter hours)`; got != want {
		t.Errorf("calendarText = %s, want %s", got, want)
	}
}

func TestPlaybookRef(t *testing.T) {
	dir := t.TempDir()
	books := filepath.Join(dir, "playbooks")
	if err := os.MkdirAll(filepath.Join(books, "certs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(books, "cert-check.yaml"):          "cert-check.yaml",
		filepath.Join(books, "certs", "rotate-ca.yaml"):  "certs/rotate-ca.yaml",
		filepath.Join(books, "..", "playbooks", "x.yml"): "x.yml",
	} {
		if got, err := playbookRef(path, books); err != nil || got != want {
			t.Errorf("playbookRef(%s) = %q, %v; want %q", path, got, err, want)
		}
	}
	for _, path := range []string{filepath.Join(dir, "elsewhere.yaml"), filepath.Join(dir, "playbooks-old", "x.yaml")} {
		if _, err := playbookRef(path, books); err == nil || !strings.Contains(err.Error(), "--snapshot") {
			t.Errorf("playbookRef(%s): %v, want a refusal that suggests --snapshot", path, err)
		}
	}
}
