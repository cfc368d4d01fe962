package plan

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParsePlacement(t *testing.T) {
	for _, tc := range []struct {
		in, err string
		want    Placement
	}{
		{in: "", want: Placement{}},
		{in: "# moved\n\nweb node02\n db  node03 \n", want: Placement{"web": "node02", "db": "node03"}},
		{in: "web\n", err: `line 1: "web": want "CONTAINER NODE"`},
		{in: "web a b\n", err: `line 1: "web a b"`},
		{in: "web a\n#\nweb b\n", err: "line 3: container web placed twice"},
	} {
		got, err := ParsePlacement([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		}
		again, err := ParsePlacement(got.Format())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("%q: Format does not read back: %v, %v", tc.in, again, err)
		}
	}
}

func TestReadPlacement(t *testing.T) {
	root := t.TempDir()
	if p, err := ReadPlacement(root); err != nil || len(p) != 0 {
		t.Fatalf("no file: %v, %v", p, err)
	}
	path := filepath.Join(root, PlacementFile)
	os.MkdirAll(filepath.Dir(path), 0o755)
	os.WriteFile(path, []byte("web\n"), 0o644)
	if _, err := ReadPlacement(root); err == nil || !strings.Contains(err.Error(), path+": line 1") {
		t.Fatalf("bad file: %v, want the path and line", err)
	}
}

// placeBaked: gw routes its ingress to web (on a) through a; a also
// runs edge (its haproxy) and serves tor (10.0.3.12) over i2p; b hosts
// containers, d too but takes DHCP, s hosts none.
func placeBaked() *Baked {
	lxc := func(cts ...Container) *LXC {
		return &LXC{Bridge: "lxcbr0", Address: "10.0.3.1/24", Network: "veth", Containers: cts}
	}
	return &Baked{Version: Version, Nodes: []Plan{
		{Name: "gw", IP: "192.168.1.1", HAProxyCfg: "backend web\n", LXC: lxc(),
			Routes: []Route{{Destination: "10.9.0.0/16", Via: "192.168.1.9"}, {Destination: "10.0.3.10/32", Via: "192.168.1.2"}}},
		{Name: "a", IP: "192.168.1.2", LXC: lxc(
			Container{Name: "web", IP: "10.0.3.10/24", MAC: "02:00:00:00:00:10"},
			Container{Name: "edge", Runs: []string{RunsI2PD}},
			Container{Name: "tor", IP: "10.0.3.12/24"},
			Container{Name: "db", IP: "10.0.3.11/24"}),
			I2P: &I2P{Servers: []I2PServer{{Service: "hidden", Host: "10.0.3.12", Port: 80}}}},
		{Name: "b", IP: "192.168.1.3", LXC: lxc()},
		{Name: "d", LXC: lxc()},
		{Name: "s", IP: "192.168.1.5"},
	}}
}

func TestPlace(t *testing.T) {
	names := func(p Plan) string {
		if p.LXC == nil {
			return "-"
		}
		var s []string
		for _, c := range p.LXC.Containers {
			s = append(s, c.Name)
		}
		return strings.Join(s, ",")
	}
	routes := func(p Plan) string {
		var s []string
		for _, r := range p.Routes {
			s = append(s, r.Destination+">"+r.Via)
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		name string
		p    Placement
		// containers and routes per node, in Nodes' order
		cts, routes []string
		err         string
	}{
		{name: "none", p: nil,
			cts:    []string{"", "web,edge,tor,db", "", "", "-"},
			routes: []string{"10.9.0.0/16>192.168.1.9 10.0.3.10/32>192.168.1.2", "", "", "", ""}},
		{name: "web to b: the gateway routes through b", p: Placement{"web": "b"},
			cts:    []string{"", "edge,tor,db", "web", "", "-"},
			routes: []string{"10.9.0.0/16>192.168.1.9 10.0.3.10/32>192.168.1.3", "", "", "", ""}},
		{name: "web to the gateway: no route", p: Placement{"web": "gw"},
			cts:    []string{"web", "edge,tor,db", "", "", "-"},
			routes: []string{"10.9.0.0/16>192.168.1.9", "", "", "", ""}},
		{name: "db had no route: the ingress gets one", p: Placement{"db": "b", "web": "a"},
			cts:    []string{"", "web,edge,tor", "db", "", "-"},
			routes: []string{"10.9.0.0/16>192.168.1.9 10.0.3.10/32>192.168.1.2 10.0.3.11/32>192.168.1.3", "", "", "", ""}},
		{name: "unknown node", p: Placement{"web": "x"}, err: "container web: no node x in the cluster config"},
		{name: "unknown container", p: Placement{"cache": "b"}, err: "container cache: not in the cluster config"},
		{name: "runs a daemon", p: Placement{"edge": "b"}, err: "container edge runs i2pd for node a: it cannot move"},
		{name: "served over i2p", p: Placement{"tor": "b"}, err: "service hidden is served over i2p from node a"},
		{name: "node without lxc", p: Placement{"web": "s"}, err: "node s hosts no containers"},
		{name: "node without an address", p: Placement{"web": "d"}, err: "node d has no static address"},
		{name: "one bad line places nothing", p: Placement{"web": "b", "zz": "b"}, err: "container zz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := placeBaked()
			before, _ := json.Marshal(b)
			orig := b.Nodes
			origJSON, _ := json.Marshal(orig)
			err := b.Place(tc.p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if after, _ := json.Marshal(b); string(after) != string(before) {
					t.Fatalf("a failed Place changed the plans:\n%s\n%s", before, after)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, n := range b.Nodes {
				if got := names(n); got != tc.cts[i] {
					t.Errorf("%s containers %q, want %q", n.Name, got, tc.cts[i])
				}
				if got := routes(n); got != tc.routes[i] {
					t.Errorf("%s routes %q, want %q", n.Name, got, tc.routes[i])
				}
			}
			if tc.p["web"] == "b" && b.Nodes[2].LXC.Containers[0].MAC != "02:00:00:00:00:10" {
				t.Errorf("web's MAC did not move with it: %+v", b.Nodes[2].LXC.Containers[0])
			}
			// The plans Place started from are not changed through
			// shared slices or pointers.
			if after, _ := json.Marshal(orig); string(after) != string(origJSON) {
				t.Fatalf("Place changed the plans it was given:\n%s\n%s", origJSON, after)
			}
		})
	}
}

// FuzzParsePlacement: any file either fails to parse or formats into one
// that parses to the same placement, and placing it never panics.
func FuzzParsePlacement(f *testing.F) {
	f.Add([]byte("# moved\nweb node02\ndb node03\n"))
	f.Add([]byte("web\n"))
	f.Add([]byte("a b\na c\n"))
	f.Add([]byte("\x00 \xff\n\n  x   y  \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePlacement(data)
		if err != nil {
			return
		}
		again, err := ParsePlacement(p.Format())
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("%q: formatted %q reads back as %v, %v", data, p.Format(), again, err)
		}
		placeBaked().Place(p)
	})
}
