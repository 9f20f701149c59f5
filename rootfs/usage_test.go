package rootfs

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestUsage(t *testing.T) {
	c := newCache(t)
	used := flatten(t, c, imageOf(t, "used", []tEntry{tFile("a", "a", 0o644)}))
	unused, err := c.Image(imageOf(t, "unused", []tEntry{tFile("b", strings.Repeat("b", 10000), 0o644)}))
	if err != nil {
		t.Fatal(err)
	}
	unused.Close()

	u := c.Usage(used.Path)
	if !u.InUse {
		t.Errorf("Usage of a tree this process holds: %+v, want in use", u)
	}
	// /proc/locks names this process, unless the test runs where it
	// cannot (no /proc).
	if _, err := os.Stat("/proc/locks"); err == nil && !slices.Contains(u.Pids, os.Getpid()) {
		t.Errorf("Usage of a tree this process holds names pids %v, not this process's %d", u.Pids, os.Getpid())
	}
	if u.LastUsed.IsZero() {
		t.Errorf("Usage of a tree with a lock file has no LastUsed")
	}
	u = c.Usage(unused.Path)
	if u.InUse || len(u.Pids) != 0 {
		t.Errorf("Usage of a tree no process holds: %+v", u)
	}
	if u := c.Usage(c.ImagePath("sha256:" + strings.Repeat("0", 64))); u.InUse || !u.LastUsed.IsZero() {
		t.Errorf("Usage of an entry that does not exist: %+v", u)
	}

	// MarkUsed moves LastUsed.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(unused.Path+".lock", old, old); err != nil {
		t.Fatal(err)
	}
	c.MarkUsed(unused.Path)
	if u := c.Usage(unused.Path); time.Since(u.LastUsed) > time.Minute {
		t.Errorf("after MarkUsed, LastUsed is %v", u.LastUsed)
	}

	digests := map[string]bool{}
	for _, p := range c.Entries() {
		if d := c.ImageDigest(p); d != "" {
			digests[d] = true
		}
	}
	if !digests[used.Digest] || !digests[unused.Digest] || len(digests) != 2 {
		t.Errorf("Entries' image digests %v, want %s and %s", digests, used.Digest, unused.Digest)
	}
	if DiskUsage(unused.Path) < 10000 {
		t.Errorf("DiskUsage of a tree with a 10000-byte file: %d", DiskUsage(unused.Path))
	}
}

func TestClaim(t *testing.T) {
	c := newCache(t)
	used := flatten(t, c, imageOf(t, "used", []tEntry{tFile("a", "a", 0o644)}))
	if _, err := c.Claim(used.Path); !errors.Is(err, ErrInUse) {
		t.Fatalf("Claim of a tree in use: %v, want ErrInUse", err)
	}
	// A claim keeps a start from using the entry until it is released.
	gone := c.ImagePath("sha256:" + strings.Repeat("1", 64))
	release, err := c.Claim(gone)
	if err != nil {
		t.Fatal(err)
	}
	l, err := lockFile(gone+".lock", unix.LOCK_SH|unix.LOCK_NB)
	if !errors.Is(err, errWouldBlock) {
		l.Unlock()
		t.Errorf("a shared lock was taken on a claimed entry: %v", err)
	}
	release()
	if _, err := os.Stat(gone + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("release left the lock file of an entry that does not exist: %v", err)
	}
}

func TestLockHolders(t *testing.T) {
	dev := unix.Mkdev(0xfd, 0x01)
	for _, tc := range []struct {
		name  string
		locks string
		want  []int
	}{
		{"shared holders", "1: FLOCK  ADVISORY  READ  100 fd:01:4242 0 EOF\n2: FLOCK  ADVISORY  READ  200 fd:01:4242 0 EOF\n", []int{100, 200}},
		{"waiters hold nothing", "1: FLOCK  ADVISORY  READ  100 fd:01:4242 0 EOF\n1: -> FLOCK  ADVISORY  WRITE 300 fd:01:4242 0 EOF\n", []int{100}},
		{"another file", "1: FLOCK  ADVISORY  READ  100 fd:01:4243 0 EOF\n", nil},
		{"another device, same inode, when one matches", "1: FLOCK  ADVISORY  READ  100 fd:01:4242 0 EOF\n2: FLOCK  ADVISORY  READ  200 00:2a:4242 0 EOF\n", []int{100}},
		{"overlay: the inode alone", "1: FLOCK  ADVISORY  READ  200 00:2a:4242 0 EOF\n", []int{200}},
		{"another pid namespace", "1: FLOCK  ADVISORY  READ  -1 fd:01:4242 0 EOF\n", nil},
		{"POSIX locks too", "1: POSIX  ADVISORY  READ  100 fd:01:4242 0 EOF\n", []int{100}},
		{"garbage", "nonsense\n\n1: FLOCK\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lockHolders(tc.locks, dev, 4242); !slices.Equal(got, tc.want) {
				t.Errorf("lockHolders = %v, want %v", got, tc.want)
			}
		})
	}
}
