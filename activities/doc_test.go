package activities

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestDocNamesEveryActivity: the package comment lists every activity Register
// registers.
func TestDocNamesEveryActivity(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(doc)), " ")
	n := 0
	for _, s := range []any{&SSH{}, &Files{}, &Playbooks{}, &Keys{}, &Docker{}, &Consul{}, &Swarm{}} {
		typ := reflect.TypeOf(s)
		for i := range typ.NumMethod() {
			name := typ.Method(i).Name
			n++
			if !strings.Contains(text, " "+name+",") && !strings.Contains(text, " "+name+".") {
				t.Errorf("doc.go does not name the activity %s.%s", typ.Elem().Name(), name)
			}
		}
	}
	t.Logf("%d activities", n)
}
