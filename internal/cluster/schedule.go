package cluster

import (
	"fmt"
	"regexp"
	"strconv"
)

// Schedule is a snapshot schedule, deliberately small: "hourly", "daily",
// "weekly", "monthly", or "daily HH:MM". Each form maps to both a systemd
// OnCalendar value and a cron line, so the node can use whichever its root
// has.
type Schedule struct {
	OnCalendar string
	Cron       string
}

var dailyAtRE = regexp.MustCompile(`^daily ([0-9]{2}):([0-9]{2})$`)

func (s *Schedule) UnmarshalText(b []byte) error {
	switch v := string(b); v {
	case "hourly":
		*s = Schedule{"hourly", "0 * * * *"}
	case "daily":
		*s = Schedule{"daily", "0 0 * * *"}
	case "weekly":
		*s = Schedule{"weekly", "0 0 * * 1"}
	case "monthly":
		*s = Schedule{"monthly", "0 0 1 * *"}
	default:
		m := dailyAtRE.FindStringSubmatch(v)
		if m == nil {
			return fmt.Errorf("bad schedule %q (expected hourly, daily, weekly, monthly or \"daily HH:MM\")", v)
		}
		h, _ := strconv.Atoi(m[1])
		min, _ := strconv.Atoi(m[2])
		if h > 23 || min > 59 {
			return fmt.Errorf("bad time in schedule %q (expected HH 00-23 and MM 00-59)", v)
		}
		*s = Schedule{fmt.Sprintf("*-*-* %02d:%02d:00", h, min), fmt.Sprintf("%d %d * * *", min, h)}
	}
	return nil
}
