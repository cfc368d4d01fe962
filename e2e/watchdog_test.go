package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWatchdog: an updatable minimal image asks nodeinit to arm QEMU
// virt's i6300esb watchdog (nodeinit.watchdog=15), which nodeinit feeds
// while it runs and hands on armed at switch_root; the root's rcS starts
// busybox's watchdog daemon, which feeds it from there. First boot: the
// root stays up for twice the timeout. Second boot: the root kills the
// daemon (SIGKILL: a SIGTERM would disarm it) and hangs; the watchdog
// resets the guest, which under -no-reboot ends the QEMU run, and `mkimage
// qemu` says the watchdog fired.
func TestWatchdog(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "fleet")
	mustRun(t, "key", "generate", "-o", key)
	overlay := markerOverlay(t, `if [ ! -e /root/e2e-fed ]; then
	echo "E2E-WD-UP timeout=$(cat /sys/class/watchdog/watchdog0/timeout) state=$(cat /sys/class/watchdog/watchdog0/state) daemon=$(ps | awk '/[w]atchdog -T/ {print $1}')"
	sleep 30
	touch /root/e2e-fed && sync
	echo "E2E-WD-ALIVE after 30s"
else
	kill -9 $(ps | awk '/[w]atchdog -T/ {print $1}')
	echo "E2E-WD-HANG: daemon killed, nothing feeds the watchdog"
	sleep 600
	echo "E2E-WD-NO-RESET"
fi`)
	img := filepath.Join(dir, "wd.img")
	mustRun(t, "--board", "qemu-virt", "--rootfs", "minimal", "--update-key", key+".pub", "--watchdog", "15",
		"--overlay", overlay, "-o", img, "-q")

	log := qemu(t, img, "E2E-WD-ALIVE", "--in-place")
	consoleHas(t, log,
		"nodeinit: watchdog: asked for, timeout 15s",
		"nodeinit: coldplug: loaded i6300esb for pci:v00008086d000025AB",
		"nodeinit: watchdog: /dev/watchdog0 (i6300ESB timer) armed, timeout 15s, fed every 5s until switch_root",
		"nodeinit: watchdog: handed over to the root's init, still armed",
		"rcS: watchdog: busybox watchdog feeds /dev/watchdog (timeout 15s)",
		"E2E-WD-UP timeout=15 state=active daemon=",
		"E2E-WD-ALIVE after 30s", // twice the timeout, fed by busybox
	)
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "watchdog") || strings.Contains(l, "i6300esb") || strings.Contains(l, "E2E-WD") {
			t.Logf("boot 1: %s", strings.TrimSpace(l))
		}
	}

	// Boot 2: the root hangs without feeding the watchdog.
	logPath := filepath.Join(dir, "hang.log")
	start := time.Now()
	_, errs, err := run(t, nil, "qemu", img, "--in-place", "--timeout", "4m", "--log", logPath, "-q")
	took := time.Since(start)
	b, _ := os.ReadFile(logPath)
	log = string(b)
	if err == nil || !strings.Contains(errs, "the guest's watchdog fired (action reset)") || !strings.Contains(errs, "-no-reboot") {
		t.Fatalf("mkimage qemu: %v, stderr %q; want the watchdog's reset reported\nconsole:\n%s", err, errs, tail(log, 40))
	}
	consoleHas(t, log,
		"nodeinit: watchdog: handed over to the root's init, still armed",
		"E2E-WD-HANG",
		"qemu: the guest's watchdog fired (action reset)",
	)
	if strings.Contains(log, "E2E-WD-NO-RESET") {
		t.Error("the root slept 600s unreset")
	}
	hang := strings.Index(log, "E2E-WD-HANG")
	t.Logf("boot 2: QEMU ran %v; console after the hang:\n%s", took.Round(time.Second), log[hang:])
}
