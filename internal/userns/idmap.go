package userns

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Outer returns the map of the outer user namespace, for newuidmap or
// newgidmap: outer 0 is the host id h, outer 1..r.Len the range r
// ([0 h 1] [1 r.Start r.Len]; the second line is left out when r is
// empty).
func Outer(h uint32, r Range) []specs.LinuxIDMapping {
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: h, Size: 1}}
	if r.Len > 0 {
		m = append(m, specs.LinuxIDMapping{ContainerID: 1, HostID: r.Start, Size: r.Len})
	}
	return m
}

// KeepID returns runc's map inside the outer namespace (container id ->
// outer id) that makes container id u the host user (outer 0) and puts the
// other container ids 0..r.Len on the range (outer 1..r.Len):
// [0 1 u] [u 0 1] [u+1 u+1 r.Len-u], without lines of size 0. Each line
// falls inside one line of Outer(h, r). It is an error when u > r.Len: the
// range has no room for the ids below u.
func KeepID(u uint32, r Range) ([]specs.LinuxIDMapping, error) {
	if r.Len >= math.MaxUint32 {
		return nil, fmt.Errorf("keep-id: a range of %d ids leaves no room for the host user", r.Len)
	}
	if u > r.Len {
		return nil, fmt.Errorf("keep-id: container id %d is above the %d subordinate ids from %d", u, r.Len, r.Start)
	}
	var m []specs.LinuxIDMapping
	for _, l := range []specs.LinuxIDMapping{
		{ContainerID: 0, HostID: 1, Size: u},
		{ContainerID: u, HostID: 0, Size: 1},
		{ContainerID: u + 1, HostID: u + 1, Size: r.Len - u},
	} {
		if l.Size > 0 {
			m = append(m, l)
		}
	}
	return m, nil
}

// lookup maps id through one map; false when no line holds it.
func lookup(id uint32, m []specs.LinuxIDMapping) (uint32, bool) {
	for _, l := range m {
		if id >= l.ContainerID && uint64(id) < uint64(l.ContainerID)+uint64(l.Size) {
			return l.HostID + (id - l.ContainerID), true
		}
	}
	return 0, false
}

// Compose maps a container id through inner (container -> outer) and then
// outer (outer -> host) to a host id; false when either map lacks it.
func Compose(id uint32, inner, outer []specs.LinuxIDMapping) (uint32, bool) {
	mid, ok := lookup(id, inner)
	if !ok {
		return 0, false
	}
	return lookup(mid, outer)
}

// ComposeMap returns the container -> host map that inner (container ->
// outer) and outer (outer -> host) make together, in canonical form (see
// Key). It is an error when an id of inner maps to an outer id that outer
// lacks.
func ComposeMap(inner, outer []specs.LinuxIDMapping) ([]specs.LinuxIDMapping, error) {
	var m []specs.LinuxIDMapping
	for _, in := range inner {
		for done := uint64(0); done < uint64(in.Size); {
			c := in.ContainerID + uint32(done)
			o := in.HostID + uint32(done)
			i := slices.IndexFunc(outer, func(l specs.LinuxIDMapping) bool {
				return o >= l.ContainerID && uint64(o) < uint64(l.ContainerID)+uint64(l.Size)
			})
			if i < 0 {
				return nil, fmt.Errorf("compose id maps: container id %d maps to outer id %d, which the outer map lacks", c, o)
			}
			l := outer[i]
			n := min(uint64(in.Size)-done, uint64(l.ContainerID)+uint64(l.Size)-uint64(o))
			m = append(m, specs.LinuxIDMapping{ContainerID: c, HostID: l.HostID + (o - l.ContainerID), Size: uint32(n)})
			done += n
		}
	}
	return canonical(m), nil
}

// canonical returns m sorted by container id, without lines of size 0, and
// with lines that continue each other in both container and host ids
// merged, so that maps that say the same say it alike.
func canonical(m []specs.LinuxIDMapping) []specs.LinuxIDMapping {
	s := slices.DeleteFunc(slices.Clone(m), func(l specs.LinuxIDMapping) bool { return l.Size == 0 })
	slices.SortFunc(s, func(a, b specs.LinuxIDMapping) int { return cmp.Compare(a.ContainerID, b.ContainerID) })
	var out []specs.LinuxIDMapping
	for _, l := range s {
		if n := len(out); n > 0 {
			p := &out[n-1]
			if uint64(p.ContainerID)+uint64(p.Size) == uint64(l.ContainerID) &&
				uint64(p.HostID)+uint64(p.Size) == uint64(l.HostID) &&
				uint64(p.Size)+uint64(l.Size) <= math.MaxUint32 {
				p.Size += l.Size
				continue
			}
		}
		out = append(out, l)
	}
	return out
}

// Key returns a canonical string of a container -> host uid map and gid
// map, for the rootfs cache key: "u:" and "g:" lists of CONTAINER>HOST for
// one id or FIRST-LAST>HOST for a range, sorted, merged where lines
// continue each other, e.g. "u:0-999>165536,1000>1002,1001-65536>166536;g:…".
// Maps with the same ids give the same key however their lines are cut.
func Key(uidMap, gidMap []specs.LinuxIDMapping) string {
	var b strings.Builder
	write := func(tag string, m []specs.LinuxIDMapping) {
		b.WriteString(tag)
		for i, l := range canonical(m) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatUint(uint64(l.ContainerID), 10))
			if l.Size > 1 {
				b.WriteByte('-')
				b.WriteString(strconv.FormatUint(uint64(l.ContainerID)+uint64(l.Size)-1, 10))
			}
			b.WriteByte('>')
			b.WriteString(strconv.FormatUint(uint64(l.HostID), 10))
		}
	}
	write("u:", uidMap)
	write(";g:", gidMap)
	return b.String()
}
