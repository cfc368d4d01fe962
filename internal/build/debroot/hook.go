package debroot

// hookScript is the first-boot hook (run by nodeinit chrooted into the
// root, /proc /sys /dev /run mounted): debootstrap's second stage for a
// root whose packages are already unpacked and registered "install ok
// unpacked". It runs each package's preinst ("install", dependency
// order, each once: base-passwd's makes /etc/passwd and /etc/group
// before anything needs a user), gives debconf the answers the build
// left (a slim root's), then `dpkg --configure -a`, which runs
// every postinst in dependency order and the triggers they activate.
// Services are not started (policy-rc.d, and no systemd is running).
// Safe to run again after a failure or a power cut: done preinsts are
// skipped, and dpkg configures only what is still unconfigured. The
// detail goes to /var/log/mkimage-dpkg-configure.log; the console gets
// progress and a summary.
//
// A container built from packages runs the same script as its
// lxc.hook.start, inside its namespaces just before its init, at every
// start: once $state/configured exists it exits at once, and a failure
// (exit 1) makes lxc-start fail instead of booting a half-configured
// root. LXC (5.0) reads a hook's output in at most 10 reads into its log
// at DEBUG level and then waits for it to exit, so past the pipe's 64 KiB
// a chatty hook would block and lxc-start hang: there (LXC_NAME is set)
// the per-package lines stay in the log file and only the few summary
// lines reach stdout.
const hookScript = `#!/bin/sh
# Written by mkimage (internal/build/debroot): configure the Debian packages
# unpacked at build time. Idempotent.
set -u
export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C LANG=C
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
state=/var/lib/mkimage/debroot
log=/var/log/mkimage-dpkg-configure.log
# Done before (a container's later starts): nothing to do. Packages the
# admin installs afterwards are apt's business, not a reason to refuse a
# start.
[ -e "$state/configured" ] && exit 0
mkdir -p "$state/preinst-done" /var/log
start=$(date +%s)
say() { echo "dpkg-configure: $*"; }
fail() {
	say "FAILED: $* (last lines of $log follow; the hook runs again at the next boot${LXC_NAME:+ or container start})"
	tail -n 25 "$log"
	exit 1
}
# The per-package lines for the console; under LXC, the log file only.
progress() {
	if [ -n "${LXC_NAME:-}" ]; then
		cat >/dev/null
	else
		grep --line-buffered -E '^(Setting up|dpkg: error|Errors were)'
	fi
}
echo "=== $(date -u) first-boot configuration" >>"$log"

# No service starts while packages are configured.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT

ldconfig >>"$log" 2>&1 || fail "ldconfig"

arch=$(dpkg --print-architecture)
dpkgver=$(dpkg-query -W -f '${Version}' dpkg 2>/dev/null)
n=0
while read -r p; do
	[ -n "$p" ] || continue
	[ -e "$state/preinst-done/$p" ] && continue
	echo "--- preinst install $p" >>"$log"
	DPKG_MAINTSCRIPT_PACKAGE=${p%%:*} DPKG_MAINTSCRIPT_ARCH=$arch \
	DPKG_MAINTSCRIPT_NAME=preinst DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 \
	DPKG_ADMINDIR=/var/lib/dpkg DPKG_ROOT= DPKG_RUNNING_VERSION=$dpkgver \
		"/var/lib/dpkg/info/$p.preinst" install >>"$log" 2>&1 </dev/null ||
		fail "preinst of $p"
	: >"$state/preinst-done/$p"
	n=$((n + 1))
done <"$state/preinst-order"
say "ran $n preinst scripts"

# Answers given at build time (--slim: man-db never rebuilds its database).
if [ -s "$state/debconf-selections" ]; then
	debconf-set-selections "$state/debconf-selections" >>"$log" 2>&1 ||
		say "warning: debconf-set-selections failed, going on (see $log)"
fi

total=$(dpkg-query -W -f '.\n' | wc -l)
todo=$(dpkg-query -W -f '${Status}\n' | grep -vc '^install ok installed$')
say "configuring $todo of $total packages"
# dpkg's "Setting up" lines go to the console too, one per package.
for try in 1 2; do
	{ dpkg --force-confold --configure -a </dev/null 2>&1; echo $? >"$state/rc"; } |
		tee -a "$log" | progress
	rc=$(cat "$state/rc")
	[ "$rc" = 0 ] && break
	say "dpkg --configure -a failed (try $try, exit $rc)"
done
[ "$rc" = 0 ] || fail "dpkg --configure -a"

ok=$(dpkg-query -W -f '${Status}\n' | grep -c '^install ok installed$')
end=$(date +%s)
[ "$ok" = "$total" ] || fail "only $ok of $total packages are installed"
rm -rf /var/cache/debconf/*-old /var/log/apt 2>/dev/null
echo "$ok $total $((end - start))" >"$state/configured"
say "$ok of $total packages installed ok in $((end - start)) s"
`
