// Package bootcfg is nodeinit's configuration: the options it takes from
// the kernel command line, after the defaults the builder baked into the
// initramfs (DefaultsPath, same syntax; the command line wins).
package bootcfg

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultsPath holds the baked defaults (see package initramfs,
// CmdlineFile).
const DefaultsPath = "/etc/nodeinit/cmdline"

// Config is what nodeinit takes from the command line.
type Config struct {
	Root       string        // root=: LABEL=, UUID=, PARTUUID=, /dev/NAME
	RootFSType string        // rootfstype=
	RootFlags  string        // rootflags=, mount options
	Init       string        // init=
	Timeout    time.Duration // nodeinit.timeout=, waiting for the root device
	Rescue     bool          // nodeinit.rescue: stop before switch_root
	// Coldplug (nodeinit.coldplug=) bounds how long coldplug looks for
	// devices the carried modules match; 0 turns it off.
	Coldplug time.Duration
	// Watchdog (nodeinit.watchdog=SECONDS) arms the board's hardware
	// watchdog with that timeout, keeps it fed while nodeinit runs and
	// hands it on armed at switch_root (package watchdog); 0, the
	// default, leaves it alone. Only a root that feeds it may ask.
	Watchdog time.Duration
	// Preconfigure (nodeinit.preconfigure): run the root's first-boot
	// hooks only, then power off (see package preconfigure).
	Preconfigure bool

	// Netboot (packages netroot and netinstall). A root= URL
	// (http://[HOST][:PORT]/root.img) is a diskless root; a URL with no
	// host means the DHCP server.
	NetrootSHA256    string // netroot.sha256=, of the whole root image
	Netinstall       string // netinstall=, URL of the card image to write
	NetinstallSHA256 string // netinstall.sha256=
	NetinstallDisk   string // netinstall.disk=, e.g. mmcblk0; empty: the only disk

	// Version (mkimage.version=, appended by the counting boot script)
	// is the version U-Boot booted: the root is that version's live
	// subvolume (package versions), not the filesystem's default one.
	Version string
}

// Default is the configuration before any command line.
func Default() Config {
	return Config{
		RootFSType: "btrfs",
		Init:       "/sbin/init",
		Timeout:    30 * time.Second,
		Coldplug:   5 * time.Second,
	}
}

// IsNetRoot says whether root= names a root image on a server.
func IsNetRoot(root string) bool {
	return strings.HasPrefix(root, "http://") || strings.HasPrefix(root, "https://")
}

// Split splits a kernel command line into words; double quotes group
// spaces into a word as the kernel does (`a="b c"` is one word).
func Split(s string) []string {
	var words []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, inWord = !inQuote, true
		case (r == ' ' || r == '\t' || r == '\n') && !inQuote:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// Apply sets c from the words of a command line. Unknown words are the
// kernel's or the root init's business and are ignored.
func (c *Config) Apply(words []string) error {
	text := map[string]*string{
		"root": &c.Root, "rootfstype": &c.RootFSType, "rootflags": &c.RootFlags, "init": &c.Init,
		"netroot.sha256": &c.NetrootSHA256, "netinstall": &c.Netinstall,
		"netinstall.sha256": &c.NetinstallSHA256, "netinstall.disk": &c.NetinstallDisk,
		"mkimage.version": &c.Version,
	}
	durations := map[string]*time.Duration{"nodeinit.timeout": &c.Timeout, "nodeinit.coldplug": &c.Coldplug, "nodeinit.watchdog": &c.Watchdog}
	// A flag alone ("nodeinit.rescue") is on, as is =1, =yes or =true.
	flags := map[string]*bool{"nodeinit.rescue": &c.Rescue, "nodeinit.preconfigure": &c.Preconfigure}
	for _, w := range words {
		k, v, hasValue := strings.Cut(w, "=")
		if p, ok := text[k]; ok {
			*p = v
		}
		if p, ok := durations[k]; ok {
			d, err := parseSeconds(v)
			if err != nil {
				return fmt.Errorf("%s=%s: %w", k, v, err)
			}
			*p = d
		}
		if p, ok := flags[k]; ok {
			*p = !hasValue || v == "1" || v == "yes" || v == "true"
		}
	}
	return nil
}

// parseSeconds reads "30" (seconds) or a Go duration ("1m30s").
func parseSeconds(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want seconds or a duration such as 45s")
	}
	return d, nil
}

// Load applies the baked defaults (the file defaults, if there is one),
// then the kernel command line (the file cmdline, /proc/cmdline on the
// node), and logs what nodeinit will do with them. A failure leaves c
// with what was applied before it.
func (c *Config) Load(defaults, cmdline string, logf func(string, ...any)) error {
	if b, err := os.ReadFile(defaults); err == nil {
		if err := c.Apply(Split(string(b))); err != nil {
			return fmt.Errorf("%s: %w", defaults, err)
		}
	} else if !os.IsNotExist(err) {
		return err
	}
	b, err := os.ReadFile(cmdline)
	if err != nil {
		return err
	}
	if err := c.Apply(Split(string(b))); err != nil {
		return fmt.Errorf("kernel command line: %w", err)
	}
	logf("config: root=%q rootfstype=%s rootflags=%q init=%s timeout=%v", c.Root, c.RootFSType, c.RootFlags, c.Init, c.Timeout)
	if c.Preconfigure {
		logf("preconfigure: the root's first-boot hooks run, then the machine powers off")
	}
	if c.Watchdog > 0 {
		logf("watchdog: asked for, timeout %v: armed after coldplug, handed on to the root's init", c.Watchdog)
	}
	if c.Version != "" {
		logf("version: %s (live/%s, from roots/%s)", c.Version, c.Version, c.Version)
	}
	if IsNetRoot(c.Root) {
		logf("netboot: diskless root %s sha256 %s", c.Root, c.NetrootSHA256)
	}
	if c.Netinstall != "" {
		disk := c.NetinstallDisk
		if disk == "" {
			disk = "(the only disk)"
		}
		logf("netboot: install %s sha256 %s to %s", c.Netinstall, c.NetinstallSHA256, disk)
	}
	return nil
}
