package kernelconfig

import (
	"testing"

	"github.com/mkimage/mkimage/internal/build/kconfig"
)

func TestCompareExplains(t *testing.T) {
	tree, err := kconfig.Parse("testdata/tree", "arm64")
	if err != nil {
		t.Fatal(err)
	}
	got := Config{"NAMESPACES": "y", "FUTEX": "y", "VIRTIO": "m", "VIRTIO_PCI": "m", "MODULAR": "m", "FLAG": "y", "ARM64": "y"}
	for _, tc := range []struct {
		line, want string
		fatal      bool
	}{
		{"CONFIG_VIRTIO_BLK=y", "VIRTIO_BLK=y requested, got unset (required, f.config:1): depends on BLK_DEV (=n) (Kconfig:31)", true},
		{"CONFIG_IPC_NS=y", "IPC_NS=y requested, got unset (required, f.config:1): depends on SYSVIPC (=n) (Kconfig:17)", true},
		{"CONFIG_ARCH_VIRT=y", "ARCH_VIRT=y requested (required, f.config:1): ARCH_VIRT does not exist in this kernel's Kconfig", true},
		{"# CONFIG_FUTEX is not set", "FUTEX=n requested, got y (required, f.config:1): its prompt is hidden unless EXPERT (=n), so its default applies (Kconfig:7)", true},
		{"# CONFIG_VIRTIO is not set", "VIRTIO=n requested, got m (required, f.config:1): selected by VIRTIO_PCI (=m)", true},
		{"CONFIG_MODULAR=y", "MODULAR=y requested, got m (required, f.config:1): depends on VIRTIO (=m), which allows m at most (Kconfig:35)", true},
		{"CONFIG_VIRTIO=y", "VIRTIO=y requested, got m (required, f.config:1): it has no prompt: only a select or its default sets it; set one of: VIRTIO_PCI", true},
		{`CONFIG_NAME="x"`, `NAME="x" requested, got unset (required, f.config:1): depends on EXPERT (=n) (Kconfig:42)`, true},
		{"CONFIG_FLAG=m", "", false},       // a bool asked as m is y
		{"CONFIG_NAMESPACES=y", "", false}, // survived
		{"# @optional\nCONFIG_GONE=y", "GONE=y requested (optional, f.config:2): GONE does not exist in this kernel's Kconfig", false},
		{"# @builtin\nCONFIG_MODULAR=y", "MODULAR=y requested, got m (builtin, f.config:2): depends on VIRTIO (=m), which allows m at most (Kconfig:35)", true},
	} {
		losses := Compare(Merge(frag(t, "f.config", tc.line)), got, tree)
		switch {
		case tc.want == "" && len(losses) != 0:
			t.Errorf("%q: unexpected loss %v", tc.line, losses)
		case tc.want == "":
		case len(losses) != 1:
			t.Errorf("%q: losses %v, want one", tc.line, losses)
		case losses[0].String() != tc.want:
			t.Errorf("%q:\n got %s\nwant %s", tc.line, losses[0], tc.want)
		case losses[0].Fatal() != tc.fatal:
			t.Errorf("%q: fatal = %v", tc.line, losses[0].Fatal())
		}
	}
}

func TestCompareWithoutTree(t *testing.T) {
	m := Merge(frag(t, "f", "CONFIG_A=y\nCONFIG_B=y\n"))
	losses := Compare(m, Config{"A": "y", "B": "n"}, nil)
	if len(losses) != 1 || losses[0].Symbol != "B" || losses[0].Got != "n" {
		t.Errorf("losses = %v", losses)
	}
}
