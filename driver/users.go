package driver

import (
	"fmt"
	"strconv"
	"strings"
)

// idRanges is a set of IDs written as "0-999,65534" (Nomad's raw_exec and exec
// use the same form for denied_host_uids).
type idRanges [][2]uint64

func parseIDRanges(s string) (idRanges, error) {
	var r idRanges
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("invalid id %q in %q", part, s)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 32); err != nil || b < a {
				return nil, fmt.Errorf("invalid id range %q in %q", part, s)
			}
		}
		r = append(r, [2]uint64{a, b})
	}
	return r, nil
}

func (r idRanges) contains(id uint32) bool {
	for _, x := range r {
		if uint64(id) >= x[0] && uint64(id) <= x[1] {
			return true
		}
	}
	return false
}
