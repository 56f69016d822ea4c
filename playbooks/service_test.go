package playbooks

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestServiceSteps(t *testing.T) {
	dir := t.TempDir()
	text := `apiVersion: clusterflow.io/v1
kind: Playbook
metadata: {name: web}
spec:
  inventory:
    defaults: {user: root, identityFile: key}
    hosts:
      - {name: master, address: 192.168.56.101}
      - {name: slave01, address: 192.168.56.102}
  steps:
    - name: web
      kind: deployService
      hosts: [master]
      service: web
      image: nginx:1.27
      replicas: 3
      env: {MODE: prod}
      ports: ["8080:80", "5353:53/udp"]
      mounts:
        - {source: data, target: /data}
        - {type: bind, source: /etc/web, target: /etc/web, readOnly: true}
      networks: [backend]
      constraints: [node.role==worker, "node.labels.zone != b"]
      healthCheck: {test: [CMD, /bin/check], interval: 10s, retries: 3}
      updateConfig: {parallelism: 1, delay: 2s, monitor: 10s, failureAction: rollback, maxFailureRatio: 0.2, order: start-first}
      rollbackConfig: {parallelism: 0, failureAction: continue}
    - name: web image
      kind: updateService
      hosts: all
      service: web
      image: nginx:1.28
    - name: web offline
      kind: deployService
      hosts: all
      service: web
      image: {name: web:3, load: images/web-3.tar}
`
	plan, err := Parse(filepath.Join(dir, "p.yaml"), []byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	s := plan.Steps[0].Service
	three := uint64(3)
	want := &ServiceStep{
		Create: true, Service: "web", Image: "nginx:1.27", Replicas: &three, Env: map[string]string{"MODE": "prod"},
		Ports:       []ServicePort{{8080, 80, "tcp", PortIngress}, {5353, 53, "udp", PortIngress}},
		Mounts:      []ServiceMount{{Type: "volume", Source: "data", Target: "/data"}, {Type: "bind", Source: "/etc/web", Target: "/etc/web", ReadOnly: true}},
		Networks:    []string{"backend"},
		Constraints: []string{"node.role==worker", "node.labels.zone != b"},
		HealthCheck: &HealthCheck{Test: []string{"CMD", "/bin/check"}, Interval: Duration(10 * time.Second), Retries: 3},
		Update: &UpdatePolicy{Parallelism: 1, Delay: Duration(2 * time.Second), Monitor: Duration(10 * time.Second),
			FailureAction: FailureRollback, MaxFailureRatio: 0.2, Order: OrderStartFirst},
		Rollback: &UpdatePolicy{Parallelism: 0, Monitor: Duration(5 * time.Second), FailureAction: FailureContinue, Order: OrderStopFirst},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("deployService:\n got %+v\nwant %+v", s, want)
	}
	u := plan.Steps[1].Service
	if u.Create || u.Image != "nginx:1.28" || u.Replicas != nil || u.Env != nil || u.Ports != nil || u.Update != nil {
		t.Fatalf("updateService leaves unset fields nil: %+v", u)
	}
	if o := plan.Steps[2].Service; o.Image != "web:3" || o.ImageLoad != filepath.Join(dir, "images/web-3.tar") {
		t.Fatalf("image with load: %+v", o)
	}
}
