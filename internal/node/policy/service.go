package policy

import (
	"fmt"
	"os"
	"path/filepath"
)

// enableService enables (on) or disables a service of the root r the way
// the root's init starts it: on systemd a multi-user.target wants-link to
// the unit file its package installed, on sysv init rc2-5 links S01NAME
// to /etc/init.d/NAME. found is false when the root has neither (then
// nothing is done), so a caller can say why it was not enabled.
func enableService(r *os.Root, name string, on bool) (found bool, err error) {
	if hasSystemd(r) {
		unit := ""
		for _, u := range []string{"lib/systemd/system/" + name + ".service", "usr/lib/systemd/system/" + name + ".service"} {
			if exists(r, u) {
				unit = "/" + u
			}
		}
		link := filepath.Join("etc/systemd/system/multi-user.target.wants", name+".service")
		if !on {
			return true, removeIfExists(r, link)
		}
		if unit == "" {
			return true, fmt.Errorf("systemd root without %s.service", name)
		}
		return true, symlink(r, unit, link)
	}
	if !exists(r, "etc/init.d/"+name) {
		return false, nil
	}
	for _, lvl := range []string{"2", "3", "4", "5"} {
		link := filepath.Join("etc/rc" + lvl + ".d/S01" + name)
		var err error
		if on {
			err = symlink(r, "../init.d/"+name, link)
		} else {
			err = removeIfExists(r, link)
		}
		if err != nil {
			return true, err
		}
	}
	return true, nil
}
