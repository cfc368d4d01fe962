package uboot

import (
	"fmt"
	"strings"

	"github.com/mkimage/mkimage/internal/bootstate"
)

// CountingScript returns the text of a boot.scr that boots one of the
// versions on the FAT partition (bootstate's layout) and counts the
// boots of a version being tried:
//
//  1. Import good, try and tries from state.env; when that gives no good
//     whose boot.env exists, from state.bak.
//  2. When try differs from good and tries is 3, 2 or 1, step tries down
//     (an if/elif ladder: the odroid-c2 build has no setexpr), export the
//     three variables, check the export has bootstate.Size bytes and
//     write it over state.env with fatwrite: same size, so U-Boot rewrites
//     its one data cluster in place. Only once that write succeeded, boot
//     try: a boot that is not counted must not boot a try.
//  3. Boot good. A version whose files do not load, or whose booti
//     returns, falls through to good in the same boot.
//
// Booting a version imports bootargs from v/<id>/boot.env, appends
// mkimage.version=<id> (the node learns what U-Boot chose, whatever
// boot.env says), loads Image and initramfs, and passes v/<id>/dtb where
// the build has fdt_addr_r and the file exists, else ${fdt_addr}, the tree
// firmware placed in memory (QEMU virt). Each step runs only when the one
// before it succeeded (`load ... || exit` does not stop a sourced script
// in U-Boot 2023.01, see BootScript). The script uses only commands the
// odroid-c2 build has, and the devtype, devnum and distro_bootpart distro
// boot sets. Its echo lines start "mkimage boot:".
func CountingScript() string {
	w := &scriptWriter{}
	part := "${devtype} ${devnum}:${distro_bootpart}"
	load := func(addr, file string) string {
		return fmt.Sprintf("load %s ${%s} /%s", part, addr, file)
	}
	// State files go through ${ramdisk_addr_r}: the initramfs overwrites
	// them there later, and nothing else is loaded before.
	importState := func(file string) {
		w.line("setenv good")
		w.line("setenv try")
		w.line("setenv tries")
		w.open(load("ramdisk_addr_r", file))
		// Naming the variables imports only those: a state file cannot
		// set bootcmd or bootargs.
		w.line("env import -t ${ramdisk_addr_r} ${filesize} good try tries")
		w.close()
	}

	w.line("# mkimage counting boot script: boots %s/<try> while its tries last, else %s/<good>.", bootstate.VersionsDir, bootstate.VersionsDir)
	w.line("# State: /%s, else /%s (good=<id>, try=<id>, tries=<n>); only /%s is written.", bootstate.EnvFile, bootstate.BakFile, bootstate.EnvFile)
	importState(bootstate.EnvFile)
	w.line("setenv mkimage_state 0")
	w.open(`test -n "${good}"`)
	w.open(fmt.Sprintf("test -e %s /%s/${good}/%s", part, bootstate.VersionsDir, bootstate.BootEnvFile))
	w.line("setenv mkimage_state 1")
	w.close()
	w.close()
	w.open(`test "${mkimage_state}" = 0`)
	w.line(`echo "mkimage boot: no usable %s, reading %s"`, bootstate.EnvFile, bootstate.BakFile)
	importState(bootstate.BakFile)
	w.close()
	w.line(`echo "mkimage boot: state good ${good} try ${try} tries ${tries}"`)

	w.line("setenv mkimage_count 0")
	w.open(`test "${try}" != "${good}"`)
	for n := bootstate.MaxTries; n >= 1; n-- {
		cond := fmt.Sprintf(`test "${tries}" = %d`, n)
		if n == bootstate.MaxTries {
			w.open(cond)
		} else {
			w.elif(cond)
		}
		w.line("setenv tries %d", n-1)
		w.line("setenv mkimage_count 1")
	}
	w.close()
	w.close()
	w.open(`test "${mkimage_count}" = 1`)
	w.line("env export -t ${ramdisk_addr_r} good try tries")
	// ${filesize} is hex without 0x, as export sets it.
	w.open(fmt.Sprintf(`test "${filesize}" = %X`, bootstate.Size))
	w.open(fmt.Sprintf("fatwrite %s ${ramdisk_addr_r} /%s ${filesize}", part, bootstate.EnvFile))
	w.line(`echo "mkimage boot: counted try ${try}, tries ${tries} left"`)
	w.bootVersion("try", part, load)
	w.close()
	w.close()
	w.close()
	w.bootVersion("good", part, load)
	w.line(`echo "mkimage boot: no version booted"`)
	return w.String()
}

// scriptWriter indents U-Boot hush script lines by their if depth.
type scriptWriter struct {
	strings.Builder
	depth int
}

func (w *scriptWriter) line(format string, args ...any) {
	w.WriteString(strings.Repeat("    ", w.depth))
	fmt.Fprintf(w, format+"\n", args...)
}

func (w *scriptWriter) open(cond string) { w.line("if %s; then", cond); w.depth++ }

func (w *scriptWriter) elif(cond string) { w.depth--; w.line("elif %s; then", cond); w.depth++ }

func (w *scriptWriter) close() { w.depth--; w.line("fi") }

// bootVersion boots the version named by the variable v (good or try).
func (w *scriptWriter) bootVersion(v, part string, load func(addr, file string) string) {
	file := func(name string) string { return fmt.Sprintf("%s/${%s}/%s", bootstate.VersionsDir, v, name) }
	start := w.depth
	w.line("setenv bootargs")
	w.open(load("ramdisk_addr_r", file(bootstate.BootEnvFile)))
	w.open("env import -t ${ramdisk_addr_r} ${filesize} bootargs")
	w.line(`setenv bootargs "${bootargs} %s=${%s}"`, bootstate.CmdlineKey, v)
	w.open(load("kernel_addr_r", file(bootstate.KernelFile)))
	w.open(load("ramdisk_addr_r", file(bootstate.InitrdFile)))
	// filesize is overwritten by the dtb load; keep the initramfs's.
	w.line("setenv initrd_size ${filesize}")
	w.line("setenv mkimage_fdt ${fdt_addr}")
	w.open(`test -n "${fdt_addr_r}"`)
	w.open(fmt.Sprintf("test -e %s /%s", part, file(bootstate.DTBFile)))
	w.open(load("fdt_addr_r", file(bootstate.DTBFile)))
	w.line("setenv mkimage_fdt ${fdt_addr_r}")
	w.close()
	w.close()
	w.close()
	// Without a tree (no dtb, no firmware tree) booti does not return to
	// try the next version: U-Boot 2023.01 prints "FDT and ATAGS support
	// not compiled in" and resets (seen in QEMU).
	w.open(`test -n "${mkimage_fdt}"`)
	w.line(`echo "mkimage boot: booting %s ${%s} tries ${tries}"`, v, v)
	w.line(`echo "mkimage boot: bootargs ${bootargs}"`)
	w.line("booti ${kernel_addr_r} ${ramdisk_addr_r}:${initrd_size} ${mkimage_fdt}")
	for w.depth > start {
		w.close()
	}
	w.line(`echo "mkimage boot: could not boot %s ${%s}"`, v, v)
}
