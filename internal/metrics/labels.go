package metrics

import (
	"sync"

	"go.temporal.io/sdk/client"
)

// Other replaces a label value outside its closed set.
const Other = "other"

// maxLabelValues bounds the values a label without a closed set takes: the first
// ones seen are kept, any beyond them become Other.
const maxLabelValues = 64

// Bounded returns h with every label value held to a bounded set, so that what
// anyone may put on the task queue (a workflow type name, an activity type name) or
// in a playbook cannot grow the number of series without limit.
//
// closed gives, per label, the values it may take (the SDK's "none" is always
// allowed); any other becomes Other. Every other label keeps its first
// maxLabelValues values and turns the rest into Other: labels the SDK fills from
// this worker's own settings (namespace, task_queue, operation, ...) stay far below
// that.
func Bounded(h client.MetricsHandler, closed map[string][]string) client.MetricsHandler {
	b := &bounds{closed: map[string]map[string]bool{}, seen: map[string]map[string]bool{}}
	for label, values := range closed {
		set := map[string]bool{"none": true}
		for _, v := range values {
			set[v] = true
		}
		b.closed[label] = set
	}
	return &boundedHandler{MetricsHandler: h, b: b}
}

// bounds is the state every handler derived from one Bounded shares.
type bounds struct {
	closed map[string]map[string]bool
	mu     sync.Mutex
	seen   map[string]map[string]bool
}

func (b *bounds) value(label, v string) string {
	if set, ok := b.closed[label]; ok {
		if set[v] {
			return v
		}
		return Other
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := b.seen[label]
	if seen == nil {
		seen = map[string]bool{}
		b.seen[label] = seen
	}
	if !seen[v] {
		if len(seen) >= maxLabelValues {
			return Other
		}
		seen[v] = true
	}
	return v
}

type boundedHandler struct {
	client.MetricsHandler
	b *bounds
}

func (h *boundedHandler) WithTags(tags map[string]string) client.MetricsHandler {
	clean := make(map[string]string, len(tags))
	for k, v := range tags {
		clean[k] = h.b.value(k, v)
	}
	return &boundedHandler{MetricsHandler: h.MetricsHandler.WithTags(clean), b: h.b}
}
