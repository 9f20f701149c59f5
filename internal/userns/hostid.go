package userns

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// HostID reads a uid_map or gid_map (/proc/self/uid_map, /proc/self/gid_map)
// and returns the id that id 0 of this namespace is in its parent, and
// whether this is a user namespace other than the initial one, whose map is
// the single line "0 0 4294967295" (then id is 0). In a nested namespace it
// is an error when id 0 is not mapped by a line of its own (size 1), as in
// the outer namespace of keep-id, whose first line is "0 H 1".
func HostID(mapPath string) (id uint32, nested bool, err error) {
	b, err := os.ReadFile(mapPath)
	if err != nil {
		return 0, false, fmt.Errorf("host id: %w", err)
	}
	m, err := parseMap(string(b))
	if err != nil {
		return 0, false, fmt.Errorf("host id: %s: %w", mapPath, err)
	}
	if len(m) == 1 && m[0] == (specs.LinuxIDMapping{ContainerID: 0, HostID: 0, Size: math.MaxUint32}) {
		return 0, false, nil
	}
	for _, l := range m {
		if l.ContainerID == 0 && l.Size > 0 {
			if l.Size != 1 {
				return 0, true, fmt.Errorf("host id: %s maps id 0 with %d ids from %d, not as an id of its own", mapPath, l.Size, l.HostID)
			}
			return l.HostID, true, nil
		}
	}
	return 0, true, fmt.Errorf("host id: %s does not map id 0", mapPath)
}

// parseMap parses the lines "ID HOSTID SIZE" of a uid_map or gid_map.
func parseMap(s string) ([]specs.LinuxIDMapping, error) {
	var m []specs.LinuxIDMapping
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("malformed line %q", strings.TrimSpace(line))
		}
		var n [3]uint32
		for i, s := range f {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("malformed line %q", strings.TrimSpace(line))
			}
			n[i] = uint32(v)
		}
		m = append(m, specs.LinuxIDMapping{ContainerID: n[0], HostID: n[1], Size: n[2]})
	}
	return m, nil
}
