package update

import (
	"fmt"
	"strconv"
	"strings"
)

// CompareVersions orders two firmware versions of the form N(.N)* with an
// optional "-suffix" (a pre-release, lower than the release itself, as in
// Semantic Versioning §11): -1, 0 or 1. Anything else is an error, and an
// unreadable version is never installed (downgrade protection cannot
// judge it).
func CompareVersions(a, b string) (int, error) {
	pa, sa, err := parseVersion(a)
	if err != nil {
		return 0, err
	}
	pb, sb, err := parseVersion(b)
	if err != nil {
		return 0, err
	}
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		switch {
		case x < y:
			return -1, nil
		case x > y:
			return 1, nil
		}
	}
	switch {
	case sa == sb:
		return 0, nil
	case sa == "":
		return 1, nil
	case sb == "":
		return -1, nil
	case sa < sb:
		return -1, nil
	default:
		return 1, nil
	}
}

func parseVersion(v string) ([]int, string, error) {
	num, suffix, _ := strings.Cut(v, "-")
	if num == "" || len(v) > 64 {
		return nil, "", fmt.Errorf("update: version %q is not N.N.N", v)
	}
	var out []int
	for _, f := range strings.Split(num, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || f != strconv.Itoa(n) {
			return nil, "", fmt.Errorf("update: version %q is not N.N.N", v)
		}
		out = append(out, n)
	}
	return out, suffix, nil
}
