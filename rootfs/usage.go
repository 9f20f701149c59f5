package rootfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Usage is what the cache knows of how an entry is used.
type Usage struct {
	// InUse is set when a process holds the entry's lock: every process
	// using an entry holds it shared.
	InUse bool
	// Pids are the processes /proc/locks names as holding it: empty when
	// they live in another pid namespace, or /proc is not there.
	Pids []int
	// LastUsed is the lock file's modification time: when the entry was
	// first used after it was made, or last used when starts mark it
	// (MarkUsed); zero when the entry has no lock file.
	LastUsed time.Time
}

// Usage reports whether a process uses the entry at path (a path RuncPath,
// InitPath, RootfsPath or ImagePath returns), which, and when it was last used. It
// writes nothing: it works on a cache this process cannot write into.
func (c *Cache) Usage(path string) Usage {
	lp := path + ".lock"
	fi, err := os.Stat(lp)
	if err != nil {
		return Usage{}
	}
	u := Usage{LastUsed: fi.ModTime()}
	// flock(2) needs no write access: try to take the lock as Prune
	// would, and let it go at once.
	l, err := lockFileReadOnly(lp, unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		l.Unlock()
		return u
	}
	if !errors.Is(err, errWouldBlock) {
		return u
	}
	u.InUse = true
	var st unix.Stat_t
	if unix.Stat(lp, &st) == nil {
		if locks, err := os.ReadFile("/proc/locks"); err == nil {
			u.Pids = lockHolders(string(locks), uint64(st.Dev), st.Ino)
		}
	}
	return u
}

// lockHolders returns the pids that hold a lock on the file with this
// device and inode, as /proc/locks (locks) lists them. A file on an
// overlay filesystem may show another device there than stat says: when
// no line has the device, lines with the inode alone are taken.
func lockHolders(locks string, dev, ino uint64) []int {
	var exact, inode []int
	for _, line := range strings.Split(locks, "\n") {
		f := strings.Fields(line)
		// "1: FLOCK ADVISORY READ 1234 fd:01:5678 0 EOF"; a waiter's
		// line has "->" after the number, and holds nothing yet.
		if len(f) < 6 || f[1] == "->" {
			continue
		}
		pid, err := strconv.Atoi(f[4])
		if err != nil || pid <= 0 {
			continue
		}
		id := strings.Split(f[5], ":")
		if len(id) != 3 {
			continue
		}
		maj, err1 := strconv.ParseUint(id[0], 16, 32)
		mnr, err2 := strconv.ParseUint(id[1], 16, 32)
		n, err3 := strconv.ParseUint(id[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || n != ino {
			continue
		}
		if uint32(maj) == unix.Major(dev) && uint32(mnr) == unix.Minor(dev) {
			exact = append(exact, pid)
		} else {
			inode = append(inode, pid)
		}
	}
	pids := exact
	if len(pids) == 0 {
		pids = inode
	}
	slices.Sort(pids)
	return slices.Compact(pids)
}

// MarkUsed sets the entry's lock file's modification time to now, for
// Usage.LastUsed: one utimensat, so a warm start stays O(1). It does
// nothing where it cannot write (a read-only cache, another user's).
func (c *Cache) MarkUsed(path string) {
	now := time.Now()
	os.Chtimes(path+".lock", now, now)
}

// ErrInUse is returned by Claim for an entry a process uses.
var ErrInUse = errors.New("in use")

// Claim takes the entry at path (which may not exist) exclusively, as
// Prune does before it removes one: no process can start using it until
// release is called. It returns ErrInUse when a process uses it. release
// removes the lock file too when the entry does not exist then, as Prune
// leaves none for an entry it removed.
func (c *Cache) Claim(path string) (release func(), err error) {
	l, err := lockFile(path+".lock", unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, errWouldBlock) {
		return nil, ErrInUse
	}
	if err != nil {
		return nil, &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
	}
	return func() {
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			os.Remove(path + ".lock")
		}
		l.Unlock()
	}, nil
}

// Entries returns the paths of the cache's entries: runc and init binaries, and
// the trees of archives and images, those made through an IDMap too (see
// MappedKey); not lock files, nor what an extraction under way writes.
func (c *Cache) Entries() []string {
	var out []string
	if ents, err := os.ReadDir(c.Dir); err == nil {
		for _, e := range ents {
			if n := e.Name(); isBinary(n) {
				out = append(out, filepath.Join(c.Dir, n))
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join(c.Dir, "rootfs")); err == nil {
		for _, e := range ents {
			if n := e.Name(); !strings.HasPrefix(n, ".") && !strings.HasSuffix(n, ".lock") {
				out = append(out, filepath.Join(c.Dir, "rootfs", n))
			}
		}
	}
	return out
}

// ImageDigest returns the manifest digest ("sha256:<hex>") of the image
// tree at path, as ImagePath names it, through an IDMap or not, or "" when
// path is no image tree of this cache.
func (c *Cache) ImageDigest(path string) string {
	if filepath.Dir(path) != filepath.Join(c.Dir, "rootfs") {
		return ""
	}
	usual, _ := splitMapped(filepath.Base(path))
	h, ok := strings.CutPrefix(usual, "image-")
	if !ok || !validDigest(h) {
		return ""
	}
	return "sha256:" + h
}

// DiskUsage is the space the file or tree at p takes on disk, as du(1)
// counts it: allocated blocks, a file with several links once. What
// cannot be read counts nothing.
func DiskUsage(p string) int64 {
	type fileID struct{ dev, ino uint64 }
	seen := map[fileID]bool{}
	var total int64
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		var st unix.Stat_t
		if unix.Lstat(q, &st) != nil {
			return nil
		}
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			id := fileID{uint64(st.Dev), st.Ino}
			if seen[id] {
				return nil
			}
			seen[id] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total
}
