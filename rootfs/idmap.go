package rootfs

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// IDMap gives every extracted entry the owner its archive ids map to.
//
// It is for a process that runs in a user namespace where it may chown to
// every id the map gives (Podman-style keep-id: container uid U is the
// user who runs mrtd, the other container ids lie on the user's
// subordinate range): a tree made through it shows the archive's owners
// to a container whose ids are mapped the same way. Such a tree depends
// on the map, so it is an entry of its own, named after Key.
type IDMap struct {
	// UID and GID map an archive's ids (ContainerID) to the ids the
	// entries are chowned to (HostID): Size ids from each.
	UID, GID []specs.LinuxIDMapping
	// Key names the trees made with this map: a tree's entry is its usual
	// name + "+" + Key. 1-32 characters of [0-9a-z].
	Key string
}

// validMapKey reports whether k may be an IDMap's Key.
func validMapKey(k string) bool {
	if len(k) == 0 || len(k) > 32 {
		return false
	}
	for _, c := range k {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// checkIDMap reports an IDMap the cache cannot extract through.
func (c *Cache) checkIDMap() error {
	switch {
	case c.IDMap == nil:
		return nil
	case c.RootOwned:
		return fmt.Errorf("rootfs cache %s: an id map and root-owned trees exclude each other", c.Dir)
	case !validMapKey(c.IDMap.Key):
		return fmt.Errorf("rootfs cache %s: id map key %q is not 1 to 32 characters of [0-9a-z]", c.Dir, c.IDMap.Key)
	}
	return nil
}

// mapSuffix is what the names of the entries made through c.IDMap end
// with: "+" and its Key; "" without a map.
func (c *Cache) mapSuffix() string {
	if c.IDMap == nil {
		return ""
	}
	return "+" + c.IDMap.Key
}

// changesMapped reports whether this process may change the trees made
// through an IDMap: remove them, and their temporary directories.
func (c *Cache) changesMapped() bool {
	return c.MappedTrees || c.IDMap != nil
}

// MappedKey returns the Key of the IDMap the tree at path (as RootfsPath
// or ImagePath names it) was made through, or "" when path is no such
// tree of this cache.
func (c *Cache) MappedKey(path string) string {
	if filepath.Dir(path) != filepath.Join(c.Dir, "rootfs") {
		return ""
	}
	_, k := splitMapped(filepath.Base(path))
	return k
}

// splitMapped splits an entry's name into its usual name and the Key of
// the map it was made through, "" when it was made through none; a name
// with a "+" that is not followed by a valid Key, or that follows no
// archive's or image's key, is returned whole.
func splitMapped(name string) (usual, key string) {
	u, k, ok := strings.Cut(name, "+")
	if !ok || !validMapKey(k) || !validDigest(strings.TrimPrefix(u, "image-")) {
		return name, ""
	}
	return u, k
}

// mapID maps id through m; false when no line holds it.
func mapID(id int, m []specs.LinuxIDMapping) (int, bool) {
	if id < 0 || uint64(id) > 0xffffffff {
		return 0, false
	}
	for _, l := range m {
		if uint64(id) >= uint64(l.ContainerID) && uint64(id) < uint64(l.ContainerID)+uint64(l.Size) {
			return int(uint64(l.HostID) + uint64(id) - uint64(l.ContainerID)), true
		}
	}
	return 0, false
}

// owner returns the owner entry (a name in the archive, for the error)
// gets, owned by uid:gid in the archive.
func (m *IDMap) owner(entry string, uid, gid int) (Owner, error) {
	u, ok := mapID(uid, m.UID)
	if !ok {
		return Owner{}, &UnmappedIDError{Entry: entry, Kind: "uid", ID: uid}
	}
	g, ok := mapID(gid, m.GID)
	if !ok {
		return Owner{}, &UnmappedIDError{Entry: entry, Kind: "gid", ID: gid}
	}
	return Owner{UID: u, GID: g}, nil
}

// UnmappedIDError reports an archive entry owned by an id that the
// Cache's IDMap does not map: the subordinate range the map was made from
// is too small for the image. Nothing of the tree is kept.
type UnmappedIDError struct {
	Entry string
	// Kind is "uid" or "gid".
	Kind string
	ID   int
}

func (e *UnmappedIDError) Error() string {
	return fmt.Sprintf("entry %q is owned by %s %d, which the id map does not map: the subordinate range is too small for it (give the user a range of 65536 ids in /etc/subuid and /etc/subgid)", e.Entry, e.Kind, e.ID)
}
