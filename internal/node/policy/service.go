package policy

import (
	"fmt"
	"path/filepath"
)

// enableService enables (on) or disables a service of the root the way
// the root's init starts it: on systemd a multi-user.target wants-link to
// the unit file its package installed, on sysv init rc2-5 links S01NAME
// to /etc/init.d/NAME. found is false when the root has neither (then
// nothing is done), so a caller can say why it was not enabled.
func enableService(root, name string, on bool) (found bool, err error) {
	if hasSystemd(root) {
		unit := ""
		for _, u := range []string{"lib/systemd/system/" + name + ".service", "usr/lib/systemd/system/" + name + ".service"} {
			if exists(root, u) {
				unit = "/" + u
			}
		}
		link := filepath.Join(root, "etc/systemd/system/multi-user.target.wants", name+".service")
		if !on {
			return true, removeIfExists(link)
		}
		if unit == "" {
			return true, fmt.Errorf("systemd root without %s.service", name)
		}
		return true, symlink(unit, link)
	}
	if !exists(root, "etc/init.d/"+name) {
		return false, nil
	}
	for _, lvl := range []string{"2", "3", "4", "5"} {
		link := filepath.Join(root, "etc/rc"+lvl+".d/S01"+name)
		var err error
		if on {
			err = symlink("../init.d/"+name, link)
		} else {
			err = removeIfExists(link)
		}
		if err != nil {
			return true, err
		}
	}
	return true, nil
}
