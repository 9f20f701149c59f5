package userns

import (
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ReadMap reads a uid_map or gid_map (/proc/self/uid_map) as a map of
// this namespace's ids (ContainerID) to its parent's (HostID).
func ReadMap(path string) ([]specs.LinuxIDMapping, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := parseMap(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// SubRange returns the range of an outer map (Outer): the ids its line
// from outer id 1 maps, the subordinate ids that id 1 onwards stand for.
// It is an error when the map has no such line.
func SubRange(outer []specs.LinuxIDMapping) (Range, error) {
	for _, l := range outer {
		if l.ContainerID == 1 && l.Size > 0 {
			return Range{Start: l.HostID, Len: l.Size}, nil
		}
	}
	return Range{}, fmt.Errorf("the user namespace maps no subordinate ids from id 1")
}

// EUID is the effective uid that mrtd's defaults and checks go by:
// os.Geteuid(), except in the namespace Enter made, where mrtd is uid 0
// but stands for the host user who started it.
func EUID() int {
	if uid, _, ok := Inside(); ok {
		return int(uid)
	}
	return os.Geteuid()
}
