package builder

import (
	"testing"

	"github.com/mkimage/mkimage/internal/build/progress"
)

func TestConfigureProgress(t *testing.T) {
	const (
		boot  = "[    1.234567] virtio_blk virtio1: [vda] 4194304 512-byte logical blocks\r\nnodeinit: firstboot: hook 50-dpkg-configure: running\n"
		start = "nodeinit: hook 50-dpkg-configure: dpkg-configure: ran 154 preinst scripts\nnodeinit: hook 50-dpkg-configure: dpkg-configure: configuring 154 of 155 packages\n"
		two   = "nodeinit: hook 50-dpkg-configure: Setting up libc6:arm64 (2.36-9+deb12u4) ...\r\nnodeinit: hook 50-dpkg-configure: Setting up openssh-server (1:9.2p1-2+deb12u3) ...\n"
	)
	for _, tc := range []struct {
		name    string
		console string
		want    progress.Report
	}{
		{"nothing yet", "", progress.Report{}},
		{"kernel only", "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x411fd070]\n", progress.Report{}},
		{"booting", boot, progress.Report{Note: "nodeinit: firstboot: hook 50-dpkg-configure: running"}},
		{"kernel lines are not news", boot + "[   47.716582] hrtimer: interrupt took 15798176 ns\n", progress.Report{Note: "nodeinit: firstboot: hook 50-dpkg-configure: running"}},
		{"a line in brackets that is not the kernel's", "[ok] done\n", progress.Report{Note: "[ok] done"}},
		{"total known", boot + start, progress.Report{Total: progress.Counts{Items: 154}, Note: "dpkg-configure: configuring 154 of 155 packages"}},
		{"two set up", boot + start + two, progress.Report{Done: progress.Counts{Items: 2}, Total: progress.Counts{Items: 154}, Note: "Setting up openssh-server (1:9.2p1-2+deb12u3) ..."}},
		{"line being written", boot + start + two + "nodeinit: hook 50-dpkg-configure: Setting up libssl3:arm64 (3.0.15-1~deb12u1) ...", progress.Report{
			Done: progress.Counts{Items: 3}, Total: progress.Counts{Items: 154}, Note: "Setting up libssl3:arm64 (3.0.15-1~deb12u1) ..."}},
		{"long line cut", "nodeinit: hook 50-dpkg-configure: Setting up a-package-with-a-name-much-longer-than-a-terminal-line (1.0) ...\n", progress.Report{
			Done: progress.Counts{Items: 1}, Note: "Setting up a-package-with-a-name-much-longer-than-a-termina…"}},
		{"all set up", boot + start + two + "nodeinit: hook 50-dpkg-configure: dpkg-configure: 155 of 155 packages installed ok in 267 s\nnodeinit: preconfigure: done\n", progress.Report{
			Done: progress.Counts{Items: 2}, Total: progress.Counts{Items: 154}, Note: "nodeinit: preconfigure: done"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := configureProgress(tc.console); got != tc.want {
				t.Errorf("configureProgress = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
