package kmod_test

import (
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/mkimage/mkimage/internal/build/kmod"
	"github.com/mkimage/mkimage/internal/build/kmod/kmodtest"
)

func TestParseModinfo(t *testing.T) {
	in := kmod.ParseModinfo([]byte("license=GPL\x00depends=zstd_compress,raid6_pq,xor-neon\x00softdep=pre: crc32c post: foo-bar\x00softdep=pre: blake2b-256\x00alias=fs-btrfs\x00alias=devname:btrfs-control\x00"))
	want := kmod.Info{
		Depends:  []string{"zstd_compress", "raid6_pq", "xor_neon"},
		SoftPre:  []string{"crc32c", "blake2b-256"},
		SoftPost: []string{"foo-bar"},
		Aliases:  []string{"fs-btrfs", "devname:btrfs-control"},
	}
	if !reflect.DeepEqual(in, want) {
		t.Errorf("got %+v\nwant %+v", in, want)
	}
	if got := kmod.ParseModinfo([]byte("depends=\x00")); got.Depends != nil {
		t.Errorf("empty depends= gave %q", got.Depends)
	}
}

// names returns the load order as module names.
func names(p *kmod.Plan) []string {
	var out []string
	for _, m := range p.Load {
		out = append(out, m.Name)
	}
	return out
}

func index(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// TestDebianKernel resolves the boards' module lists against Debian's
// real arm64 kernel package, which has no modules.dep.
func TestDebianKernel(t *testing.T) {
	k := kmodtest.DebianKernel(t)
	set, err := kmod.OpenDir(k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		want     []string
		contains []string    // each must be loaded
		before   [][2]string // a before b
		builtin  []string
	}{
		{
			want:     []string{"btrfs"},
			contains: []string{"btrfs", "libcrc32c", "crc32c_generic", "xor", "raid6_pq", "zstd_compress", "xxhash_generic", "blake2b_generic"},
			before:   [][2]string{{"crc32c_generic", "libcrc32c"}, {"libcrc32c", "btrfs"}, {"raid6_pq", "btrfs"}, {"xor", "btrfs"}, {"zstd_compress", "btrfs"}},
		},
		{
			want:     []string{"virtio_blk", "virtio-pci", "virtio_mmio", "virtio_net", "btrfs"},
			contains: []string{"virtio_blk", "virtio_pci", "virtio_pci_modern_dev", "virtio_mmio", "net_failover", "failover", "virtio_net"},
			before:   [][2]string{{"virtio_pci_modern_dev", "virtio_pci"}, {"failover", "net_failover"}, {"net_failover", "virtio_net"}},
		},
		{
			want:     []string{"meson-gx-mmc", "pwrseq_emmc", "pwrseq_simple"},
			contains: []string{"meson_gx_mmc"},
			builtin:  []string{"pwrseq_emmc", "pwrseq_simple"},
		},
		{
			want:     []string{"sdhci-xenon-driver"},
			contains: []string{"sdhci", "sdhci_pltfm", "sdhci_xenon_driver"},
			before:   [][2]string{{"sdhci", "sdhci_pltfm"}, {"sdhci_pltfm", "sdhci_xenon_driver"}},
		},
		{
			// An alias names its module.
			want:     []string{"crc32c"},
			contains: []string{"crc32c_generic"},
		},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.want, ","), func(t *testing.T) {
			p, err := set.Resolve(tt.want...)
			if err != nil {
				t.Fatal(err)
			}
			got := names(p)
			seen := map[string]bool{}
			for _, n := range got {
				if seen[n] {
					t.Errorf("%s loaded twice: %v", n, got)
				}
				seen[n] = true
			}
			for _, n := range tt.contains {
				if !seen[n] {
					t.Errorf("%s missing from %v", n, got)
				}
			}
			for _, b := range tt.before {
				if i, j := index(got, b[0]), index(got, b[1]); i < 0 || j < 0 || i > j {
					t.Errorf("%s must load before %s: %v", b[0], b[1], got)
				}
			}
			for _, n := range tt.builtin {
				if index(p.Builtin, n) < 0 || seen[n] {
					t.Errorf("%s should be reported built in, not loaded: builtin %v, load %v", n, p.Builtin, got)
				}
			}
			// Everything a loaded module depends on comes before it.
			for i, m := range p.Load {
				in, err := set.Info(m)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range in.Depends {
					if j := index(got, d); j > i || (j < 0 && !set.Builtin(d)) {
						t.Errorf("%s depends on %s, which is at %d of %v", m.Name, d, j, got)
					}
				}
			}
			if len(p.MissingSoft) > 0 {
				t.Errorf("soft dependencies not found: %v", p.MissingSoft)
			}
		})
	}
	if _, err := set.Resolve("btrfs", "no_such_module"); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("unknown module: err = %v, want one naming no_such_module", err)
	}
}

func TestErrors(t *testing.T) {
	// Not ELF: the error names the file.
	fsys := fstest.MapFS{
		"kernel/a.ko":     {Data: []byte("not an ELF file")},
		"modules.builtin": {Data: []byte("kernel/lib/b.ko\n")},
	}
	set, err := kmod.Open(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Resolve("a"); err == nil || !strings.Contains(err.Error(), "kernel/a.ko") {
		t.Errorf("bad ELF: err = %v, want one naming kernel/a.ko", err)
	}
	if p, err := set.Resolve("b"); err != nil || len(p.Load) != 0 || !reflect.DeepEqual(p.Builtin, []string{"b"}) {
		t.Errorf("built-in b: plan %+v, err %v", p, err)
	}
	if _, err := kmod.Open(fstest.MapFS{"x": {}}); err == nil {
		t.Error("a directory without modules gave no error")
	}
	if _, err := kmod.OpenDir("/nonexistent/modules"); err == nil || !strings.Contains(err.Error(), "/nonexistent/modules") {
		t.Errorf("missing dir: err = %v", err)
	}
}

// A kernel that lists its built-in device tables in
// modules.builtin.modinfo (newer kbuild does) answers by modalias.
func TestMatchBuiltin(t *testing.T) {
	fsys := fstest.MapFS{
		"modules.builtin":         {Data: []byte("kernel/drivers/regulator/fixed.ko\n")},
		"modules.builtin.modinfo": {Data: []byte("fixed.alias=of:N*T*Cregulator-fixed\x00fixed.alias=of:N*T*Cregulator-fixedC*\x00fixed.license=GPL\x00")},
	}
	s, err := kmod.Open(fsys)
	if err != nil {
		t.Fatal(err)
	}
	for alias, want := range map[string]string{
		"of:NregT(null)Cregulator-fixed":          "fixed",
		"of:NregT(null)Cregulator-fixedCvendor,x": "fixed",
		"of:NregT(null)Cregulator-gpio":           "",
	} {
		if got := strings.Join(s.MatchBuiltin(alias), ","); got != want {
			t.Errorf("MatchBuiltin(%q) = %q, want %q", alias, got, want)
		}
	}
}
