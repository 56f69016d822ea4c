package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// timing is what the schedule flags say about when a playbook runs, as typed.
type timing struct {
	cron     []string
	every    string
	offset   string
	jitter   string
	catchup  string
	timezone string
	overlap  string
}

// scheduleTimes is a timing checked and turned into the SDK's terms.
type scheduleTimes struct {
	spec    client.ScheduleSpec
	overlap enumspb.ScheduleOverlapPolicy
	catchup time.Duration // 0: the server's default (one year)
	text    string        // the spec as a person reads it, kept in the schedule's memo
}

// overlapPolicies maps the --overlap names to Temporal's policies, in the order the
// help lists them.
var overlapPolicies = []struct {
	name   string
	policy enumspb.ScheduleOverlapPolicy
}{
	{"skip", enumspb.SCHEDULE_OVERLAP_POLICY_SKIP},
	{"buffer-one", enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE},
	{"buffer-all", enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ALL},
	{"cancel-other", enumspb.SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER},
	{"terminate-other", enumspb.SCHEDULE_OVERLAP_POLICY_TERMINATE_OTHER},
	{"allow-all", enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL},
}

func overlapNames() string {
	names := make([]string, len(overlapPolicies))
	for i, o := range overlapPolicies {
		names[i] = o.name
	}
	return strings.Join(names, ", ")
}

// parseOverlap reads an --overlap value; "" is the schedule's own policy (unspecified).
func parseOverlap(s string) (enumspb.ScheduleOverlapPolicy, error) {
	if s == "" {
		return enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED, nil
	}
	for _, o := range overlapPolicies {
		if o.name == s {
			return o.policy, nil
		}
	}
	return 0, fmt.Errorf("--overlap %q: use one of %s", s, overlapNames())
}

// overlapName is the --overlap name of a policy; the server's default is skip.
func overlapName(p enumspb.ScheduleOverlapPolicy) string {
	if p == enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED {
		return "skip"
	}
	for _, o := range overlapPolicies {
		if o.policy == p {
			return o.name
		}
	}
	return strings.ToLower(strings.TrimPrefix(p.String(), "SCHEDULE_OVERLAP_POLICY_"))
}

// daysPrefix matches the days part a span may start with: "90d", "1d12h".
var daysPrefix = regexp.MustCompile(`^(\d+)d`)

// parseSpan reads a duration as Go writes them (30s, 15m, 6h30m), which may start
// with a number of days (90d, 7d12h): schedules are often counted in days.
func parseSpan(flag, s string) (time.Duration, error) {
	bad := fmt.Errorf("--%s %q: want a duration such as 30s, 15m, 6h or 90d", flag, s)
	rest := strings.TrimSpace(s)
	if rest == "" || strings.ContainsAny(rest, "+-") {
		return 0, bad
	}
	var d time.Duration
	if m := daysPrefix.FindStringSubmatch(rest); m != nil {
		days, err := strconv.Atoi(m[1])
		if err != nil || days > 100*365 {
			return 0, bad
		}
		d, rest = time.Duration(days)*24*time.Hour, rest[len(m[0]):]
	}
	if rest != "" {
		more, err := time.ParseDuration(rest)
		if err != nil {
			return 0, bad
		}
		d += more
	}
	return d, nil
}

// spanText writes a duration back with days when it has whole ones: 2160h is 90d.
func spanText(d time.Duration) string {
	day := 24 * time.Hour
	if d < day {
		return shortDuration(d)
	}
	text := strconv.Itoa(int(d/day)) + "d"
	if rest := d % day; rest != 0 {
		text += shortDuration(rest)
	}
	return text
}

// shortDuration drops the zero units Go writes after the last one that counts:
// 6h0m0s is 6h, 1m30s stays.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// resolve checks the timing flags and builds the schedule spec and policies.
func (t timing) resolve() (scheduleTimes, error) {
	var st scheduleTimes
	var parts []string
	if len(t.cron) == 0 && t.every == "" {
		return st, errors.New("say when the playbook runs: --cron 'MIN HOUR DOM MON DOW' (repeatable) or --every DURATION")
	}
	for _, c := range t.cron {
		c = strings.TrimSpace(c)
		if c == "" {
			return st, errors.New("--cron: empty expression")
		}
		if n := len(strings.Fields(c)); !strings.HasPrefix(c, "@") && !strings.Contains(c, "TZ=") && (n < 5 || n > 7) {
			return st, fmt.Errorf("--cron %q: want 5 fields (minute hour day-of-month month day-of-week), 6 (plus year) or 7 (seconds first), or @daily, @weekly, @monthly", c)
		}
		st.spec.CronExpressions = append(st.spec.CronExpressions, c)
		parts = append(parts, fmt.Sprintf("cron %q", c))
	}
	if t.every != "" {
		every, err := parseSpan("every", t.every)
		if err != nil {
			return st, err
		}
		if every < time.Second {
			return st, fmt.Errorf("--every %s: the interval must be at least 1s", t.every)
		}
		iv := client.ScheduleIntervalSpec{Every: every}
		text := "every " + spanText(every)
		if t.offset != "" {
			if iv.Offset, err = parseSpan("offset", t.offset); err != nil {
				return st, err
			}
			if iv.Offset >= every {
				return st, fmt.Errorf("--offset %s must be shorter than --every %s", t.offset, t.every)
			}
			if iv.Offset > 0 {
				text += " (offset " + spanText(iv.Offset) + ")"
			}
		}
		st.spec.Intervals = append(st.spec.Intervals, iv)
		parts = append(parts, text)
	} else if t.offset != "" {
		return st, errors.New("--offset needs --every")
	}
	if t.jitter != "" {
		j, err := parseSpan("jitter", t.jitter)
		if err != nil {
			return st, err
		}
		st.spec.Jitter = j
		if j > 0 {
			parts = append(parts, "jitter "+spanText(j))
		}
	}
	if t.catchup != "" {
		c, err := parseSpan("catchup-window", t.catchup)
		if err != nil {
			return st, err
		}
		if c < 10*time.Second {
			return st, fmt.Errorf("--catchup-window %s: Temporal's minimum is 10s", t.catchup)
		}
		st.catchup = c
	}
	if t.timezone != "" {
		if _, err := time.LoadLocation(t.timezone); err != nil {
			return st, fmt.Errorf("--timezone %q: %w", t.timezone, err)
		}
		st.spec.TimeZoneName = t.timezone
		parts = append(parts, "in "+t.timezone)
	}
	overlap, err := parseOverlap(t.overlap)
	if err != nil {
		return st, err
	}
	if overlap == enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED {
		overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
	}
	st.overlap = overlap
	st.text = strings.Join(parts, ", ")
	return st, nil
}

// specText describes a spec read back from the server, for schedules whose memo does
// not carry the text written at creation (made in the Web UI, for example).
func specText(s *client.ScheduleSpec) string {
	if s == nil {
		return "-"
	}
	var parts []string
	for _, c := range s.CronExpressions {
		parts = append(parts, fmt.Sprintf("cron %q", c))
	}
	for _, c := range s.Calendars {
		parts = append(parts, "calendar "+calendarText(c))
	}
	for _, iv := range s.Intervals {
		text := "every " + spanText(iv.Every)
		if iv.Offset > 0 {
			text += " (offset " + spanText(iv.Offset) + ")"
		}
		parts = append(parts, text)
	}
	if s.Jitter > 0 {
		parts = append(parts, "jitter "+spanText(s.Jitter))
	}
	if s.TimeZoneName != "" && s.TimeZoneName != "UTC" {
		parts = append(parts, "in "+s.TimeZoneName)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// calendarFields are a calendar spec's fields in cron order, with their full ranges.
var calendarFields = []struct {
	name     string
	get      func(client.ScheduleCalendarSpec) []client.ScheduleRange
	min, max int
}{
	{"second", func(c client.ScheduleCalendarSpec) []client.ScheduleRange { return c.Second }, 0, 59},
	{"minute", func(c client.ScheduleCalendarSpec) []client.ScheduleRange { return c.Minute }, 0, 59},
	{"hour", func(c client.ScheduleCalendarSpec) []client.ScheduleRange { return c.Hour }, 0, 23},
	{"day of month", func(c client.ScheduleCalendarSpec) []client.ScheduleRange { return c.DayOfMonth }, 1, 31},
	{"month", func(c client.ScheduleCalendarSpec) []client.ScheduleRange { return c.Month }, 1, 12},
	{"day of week", func(c client.ScheduleCalendarSpec) []client.ScheduleRange { return c.DayOfWeek }, 0, 6},
	{"year", func(c client.ScheduleCalendarSpec) []client.ScheduleRange { return c.Year }, 0, 0},
}

// calendarText writes a calendar spec (the server turns cron expressions into these)
// back as a 7-field cron expression: second minute hour day-of-month month
// day-of-week year.
func calendarText(c client.ScheduleCalendarSpec) string {
	fields := make([]string, len(calendarFields))
	for i, f := range calendarFields {
		fields[i] = rangesText(f.get(c), f.min, f.max)
	}
	text := fmt.Sprintf("%q", strings.Join(fields, " "))
	if c.Comment != "" {
		text += " (" + c.Comment + ")"
	}
	return text
}

// rangesText writes one calendar field: "*" for its full range (or none given, as
// for year), else comma-separated values, ranges and steps.
func rangesText(rs []client.ScheduleRange, min, max int) string {
	if len(rs) == 0 {
		return "*"
	}
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		end := r.End
		if end < r.Start {
			end = r.Start // End 0 means a single value
		}
		var text string
		switch {
		case r.Start == min && end == max && max > min:
			text = "*"
		case end == r.Start:
			text = strconv.Itoa(r.Start)
		default:
			text = fmt.Sprintf("%d-%d", r.Start, end)
		}
		if r.Step > 1 {
			text += "/" + strconv.Itoa(r.Step)
		}
		parts = append(parts, text)
	}
	return strings.Join(parts, ",")
}
