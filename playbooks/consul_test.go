package playbooks

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// consulPlaybook is a playbook with three hosts and one consulBootstrap step whose
// fields are given (YAML lines, indented for the step).
func consulPlaybook(fields string) string {
	return `apiVersion: clusterflow.io/v1
kind: Playbook
metadata: {name: consul}
spec:
  inventory:
    defaults: {user: root, identityFile: /keys/id}
    hosts:
      - {name: master, address: 192.0.2.11, groups: [managers]}
      - {name: slave01, address: 192.0.2.12, groups: [workers]}
      - {name: slave02, address: 192.0.2.13, groups: [workers]}
  steps:
    - name: consul
      kind: consulBootstrap
      hosts: all
` + fields
}

// TestConsulStepResolved checks the resolved consulBootstrap step for each source:
// defaults, paths made absolute, the SHA-256 taken from a SHA256SUMS file by the
// binary's (or the zip's) name.
func TestConsulStepResolved(t *testing.T) {
	home := fakeHome(t)
	dir := t.TempDir()
	binSum := strings.Repeat("ab", 32)
	zipSum := strings.Repeat("cd", 32)
	writeFile(t, filepath.Join(dir, "bin", "consul"), "#!/bin/sh\n")
	writeFile(t, filepath.Join(dir, "bin", "SHA256SUMS"), "# made by lab consul\n"+
		strings.ToUpper(binSum)+"  consul\n"+zipSum+" *consul_1.22.7_linux_amd64.zip\n")
	outside := t.TempDir() // binary may lie outside the playbook's directory
	writeFile(t, filepath.Join(outside, "consul"), "#!/bin/sh\n")

	cases := map[string]struct {
		fields string
		want   ConsulStep
	}{
		"defaults": {
			fields: "      binary: bin/consul\n      sha256: " + binSum + "\n",
			want: ConsulStep{Servers: []string{"master", "slave01", "slave02"}, Source: ConsulFromFile,
				Binary: filepath.Join(dir, "bin", "consul"), SHA256: binSum, Datacenter: "dc1",
				GossipKeyFile: filepath.Join(home, ".config", "clusterflow", "consul-gossip.key")},
		},
		"file with sha256sums": {
			fields: "      servers: managers\n      binary: " + filepath.Join(outside, "consul") + "\n      sha256sums: bin/SHA256SUMS\n" +
				"      datacenter: lab-1\n      gossipKeyFile: keys/gossip.key\n      bindInterface: eth1\n      version: 1.22.7\n",
			want: ConsulStep{Servers: []string{"master"}, Source: ConsulFromFile, Binary: filepath.Join(outside, "consul"),
				SHA256: binSum, Version: "1.22.7", Datacenter: "lab-1", GossipKeyFile: filepath.Join(dir, "keys", "gossip.key"),
				BindInterface: "eth1"},
		},
		"url with sha256sums": {
			fields: "      source: url\n      url: https://releases.hashicorp.com/consul/1.22.7/consul_1.22.7_linux_amd64.zip\n" +
				"      sha256sums: bin/SHA256SUMS\n      servers: [master, slave01]\n",
			want: ConsulStep{Servers: []string{"master", "slave01"}, Source: ConsulFromURL,
				URL: "https://releases.hashicorp.com/consul/1.22.7/consul_1.22.7_linux_amd64.zip", SHA256: zipSum, Datacenter: "dc1",
				GossipKeyFile: filepath.Join(home, ".config", "clusterflow", "consul-gossip.key")},
		},
		"apt with a mirror": {
			fields: "      source: apt\n      url: https://mirror.example/hashicorp/\n      version: 1.22.7-1\n      gossipKeyFile: ~/k\n",
			want: ConsulStep{Servers: []string{"master", "slave01", "slave02"}, Source: ConsulFromApt,
				URL: "https://mirror.example/hashicorp", Version: "1.22.7-1", Datacenter: "dc1", GossipKeyFile: filepath.Join(home, "k")},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			plan, err := Parse(filepath.Join(dir, "consul.yaml"), []byte(consulPlaybook(c.fields)), dir)
			if err != nil {
				t.Fatal(err)
			}
			s := plan.Steps[0]
			if s.Kind != KindConsulBootstrap || s.Consul == nil {
				t.Fatalf("step %+v", s)
			}
			if !reflect.DeepEqual(*s.Consul, c.want) {
				t.Errorf("got  %+v\nwant %+v", *s.Consul, c.want)
			}
		})
	}
}

// TestConsulSourceErrorsDoNotCascade checks that a wrong source is reported alone:
// the fields a source needs are not asked for when the source itself is unknown.
func TestConsulSourceErrorsDoNotCascade(t *testing.T) {
	fakeHome(t)
	_, err := Parse("inline", []byte(consulPlaybook("      source: [file]\n      datacenter: Bad\n")), t.TempDir())
	list, _ := err.(ErrorList)
	if len(list) != 2 || list[0].Field != "spec.steps[0].source" || list[1].Field != "spec.steps[0].datacenter" {
		t.Fatalf("errors:\n%v", err)
	}
}

func TestParseSums(t *testing.T) {
	sums, bad := parseSums("# comment\r\n\n" + strings.Repeat("A", 64) + "  ./consul\r\n" + strings.Repeat("b", 64) + " *consul.zip\n")
	if bad != "" || sums["consul"] != strings.Repeat("a", 64) || sums["consul.zip"] != strings.Repeat("b", 64) {
		t.Fatalf("%v %q", sums, bad)
	}
	for _, text := range []string{"abc  consul\n", strings.Repeat("a", 64) + "\n", strings.Repeat("g", 64) + "  consul\n", strings.Repeat("a", 64) + "  \n"} {
		if _, bad := parseSums(text); bad == "" {
			t.Errorf("%q accepted", text)
		}
	}
}
