package kernelconfig_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkimage/mkimage/internal/build/kmod/kmodtest"
	"github.com/mkimage/mkimage/internal/cachedir"

	"github.com/mkimage/mkimage/boards"
	"github.com/mkimage/mkimage/internal/build/kbuild"
	"github.com/mkimage/mkimage/internal/testenv"
	kernelconfig "github.com/mkimage/mkimage/kernel-configs"
)

// DebianSource is Debian's linux-source-6.1, the stand-in for a
// kernel.org tarball.
const DebianSource = "/usr/src/linux-source-6.1.tar.xz"

func openDebianSource(t *testing.T) (*kbuild.Source, kbuild.Toolchain) {
	t.Helper()
	testenv.NeedFile(t, DebianSource)
	testenv.NeedTools(t, "make", "tar", "xz", "gcc", "flex", "bison", kbuild.CrossPrefix+"gcc")
	cache := cachedir.Dir("kernel")
	src, err := kbuild.OpenSource(DebianSource, cache, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := kbuild.DetectToolchain("auto")
	if err != nil {
		t.Fatal(err)
	}
	return src, tc
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Every board's config resolves against 6.1 without losing a required
// symbol, and the only optional losses are symbols 6.1 no longer has.
func TestBoardsResolveOn61(t *testing.T) {
	src, tc := openDebianSource(t)
	all, err := boards.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range all {
		t.Run(b.Name, func(t *testing.T) {
			m, err := kernelconfig.ForBoardMerged(b)
			if err != nil {
				t.Fatal(err)
			}
			res, err := kernelconfig.Resolve(context.Background(), m, src, "allnoconfig", tc)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range res.Losses {
				if l.Fatal() || !l.Unknown {
					t.Errorf("lost: %s", l)
				} else {
					t.Logf("note: %s", l)
				}
			}
			for _, w := range res.Warnings {
				t.Errorf("Kconfig parser: %s", w)
			}
			cfg, _ := kernelconfig.ParseConfig("resolved", strings.NewReader(string(res.Config)))
			for _, sym := range []string{"BTRFS_FS", "DEVTMPFS", "RD_XZ", "SERIAL_AMBA_PL011_CONSOLE", "IPC_NS", "NFT_MASQ", "VETH"} {
				if cfg.Get(sym) != "y" {
					t.Errorf("%s = %s, want y", sym, cfg.Get(sym))
				}
			}
		})
	}
}

// A fragment breaking the boot path is reported with its cause, as the
// design notes saw on 6.1.
func TestLossExplainedOn61(t *testing.T) {
	src, tc := openDebianSource(t)
	b, _ := boards.Get("qemu-virt")
	bad, err := kernelconfig.ParseFragment("bad.config", strings.NewReader("# CONFIG_BLK_DEV is not set\n# CONFIG_SYSVIPC is not set\n# CONFIG_POSIX_MQUEUE is not set\nCONFIG_ARCH_VIRT=y\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := kernelconfig.ForBoardMerged(b, bad)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Conflicts) != 3 {
		t.Errorf("conflicts: %v", m.Conflicts)
	}
	res, err := kernelconfig.Resolve(context.Background(), m, src, "allnoconfig", tc)
	if err != nil {
		t.Fatal(err)
	}
	var fatal []string
	for _, l := range res.Fatal() {
		fatal = append(fatal, l.String())
	}
	got := strings.Join(fatal, "\n")
	for _, want := range []string{
		"VIRTIO_BLK=y requested, got unset (required, kernel-configs/soc/qemu-virt.config:12): depends on BLK_DEV (=n) (drivers/block/Kconfig:",
		"IPC_NS=y requested, got unset (required, kernel-configs/lxc.config:",
		"depends on SYSVIPC (=n) || POSIX_MQUEUE (=n) (init/Kconfig:",
		"ARCH_VIRT=y requested (required, bad.config:4): ARCH_VIRT does not exist in this kernel's Kconfig",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("losses lack %q:\n%s", want, got)
		}
	}
}

// Debian's arm64 kernel config passes the lxc, netfilter and btrfs sets,
// with modules (=m) counting as enabled.
func TestCheckDebianConfig(t *testing.T) {
	testenv.NeedTools(t, "dpkg-deb", "tar")
	debs := []string{kmodtest.Deb(t, "linux-image-")}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './boot/config-*'`, "sh", debs[0], dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extracting config: %v\n%s", err, out)
	}
	cfgs, _ := filepath.Glob(filepath.Join(dir, "boot", "config-*"))
	if len(cfgs) != 1 {
		t.Fatalf("configs in %s: %v", debs[0], cfgs)
	}
	cfg, err := kernelconfig.ReadConfigFile(cfgs[0])
	if err != nil {
		t.Fatal(err)
	}
	rep, err := kernelconfig.Check(cfg, []string{"lxc", "netfilter", "btrfs"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 {
		var b strings.Builder
		rep.WriteTable(&b)
		t.Errorf("Debian's config fails:\n%s", b.String())
	}
	modules := 0
	for _, r := range rep.Rows {
		if r.Actual == "m" && r.OK {
			modules++
		}
	}
	if modules == 0 {
		t.Errorf("no =m row counted as enabled; Debian builds VETH, BTRFS_FS... as modules")
	}
	// DEVTMPFS_MOUNT is off in Debian's kernel: nodeinit mounts devtmpfs
	// itself. The check must say so (optional).
	rep, _ = kernelconfig.Check(cfg, []string{"base"})
	for _, r := range rep.Rows {
		if r.Symbol == "DEVTMPFS_MOUNT" && r.Status != "missing (optional)" {
			t.Errorf("DEVTMPFS_MOUNT row: %+v", r)
		}
	}
}
