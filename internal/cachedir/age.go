package cachedir

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseAge reads an age such as --older-than takes: a Go duration ("36h",
// "90m"), a number of days ("30d", "1.5d"), or days followed by a Go
// duration ("1d12h"). Negative ages are refused.
func ParseAge(s string) (time.Duration, error) {
	bad := fmt.Errorf("age %q is not a duration; use days or Go's units, e.g. 30d, 36h or 1d12h", s)
	t := strings.TrimSpace(s)
	var d time.Duration
	// No Go unit holds a 'd', so everything before one is the days.
	if days, rest, ok := strings.Cut(t, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || !(n >= 0 && n <= 100*365) { // also refuses NaN
			return 0, bad
		}
		d, t = time.Duration(n*float64(24*time.Hour)), rest
		if t == "" {
			return d, nil
		}
	}
	r, err := time.ParseDuration(t)
	if err != nil || r < 0 {
		return 0, bad
	}
	return d + r, nil
}
