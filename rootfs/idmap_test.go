package rootfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ownedBy returns e owned by uid:gid in the archive.
func ownedBy(e tEntry, uid, gid int) tEntry {
	e.hdr.Uid, e.hdr.Gid = uid, gid
	return e
}

// keepIDMap is a keep-id map as the daemon makes it, for container uid
// 1000 on a range of 65536, onto host ids a test as root may chown to:
// container 0..999 on host+1.., 1000 on host, 1001..65535 on host+1001...
// uids start at 200000 and gids at 300000, to tell them apart.
func keepIDMap(key string) *IDMap {
	lines := func(host uint32) []specs.LinuxIDMapping {
		return []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: host + 1, Size: 1000},
			{ContainerID: 1000, HostID: host, Size: 1},
			{ContainerID: 1001, HostID: host + 1001, Size: 64535},
		}
	}
	return &IDMap{UID: lines(200000), GID: lines(300000), Key: key}
}

// selfMap maps archive id 0 onto this process's uid and gid: a map an
// unprivileged test may extract through.
func selfMap(key string) *IDMap {
	return &IDMap{
		UID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getuid()), Size: 1}},
		GID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getgid()), Size: 1}},
		Key: key,
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chown to ids other than its own needs root")
	}
}

func assertOwner(t *testing.T, p string, uid, gid int) {
	t.Helper()
	st := lstat(t, p).Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
	}
}

// mappedArchive has entries owned by container root, the keep-id user
// (1000), nobody (65534), and no one (parents the archive does not list,
// the root, the mount points it lacks).
func mappedArchive() []tEntry {
	return []tEntry{
		tDir("./", 0o755),
		tDir("etc/", 0o755).withModTime(time.Unix(1_500_000_000, 0)),
		tFile("etc/passwd", "root:x:0:0::/:/bin/sh\n", 0o644),
		ownedBy(tDir("home/u/", 0o2750), 1000, 1000).withModTime(time.Unix(1_400_000_000, 0)),
		ownedBy(tFile("home/u/run", "#!/bin/sh\n", 0o6755), 1000, 1000),
		ownedBy(tHardlink("home/u/run2", "home/u/run"), 1000, 1000),
		ownedBy(tSymlink("home/u/sh", "/bin/sh"), 1000, 1000),
		ownedBy(tDir("ro/", 0o555), 1000, 65534),
		ownedBy(tFile("ro/nobody", "n\n", 0o640), 65534, 65534),
		ownedBy(tSymlink("ro/link", "nobody"), 65534, 1000),
		tFile("usr/lib/libx.so", "ELF", 0o644),
	}
}

func TestRootfsIDMap(t *testing.T) {
	needRoot(t)
	c := newCache(t)
	c.IDMap = keepIDMap("k1")
	a, _ := memArchive("mapped", makeTarZst(t, mappedArchive()...))
	ref, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("Rootfs: %v", err)
	}
	defer closeRef(t, ref)
	want := filepath.Join(c.Dir, "rootfs", a.Digest+"+k1")
	if ref.Path != want || c.RootfsPath(a.Digest) != want || ref.Digest != a.Digest || !ref.Extracted {
		t.Errorf("Rootfs = %+v, RootfsPath %s, want %s extracted", ref, c.RootfsPath(a.Digest), want)
	}
	assertMappedTree(t, ref.Path)
	assertNoTemps(t, c)

	// Without the map, the same archive is another entry, the
	// extracting user's.
	c.IDMap = nil
	plain, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("Rootfs without a map: %v", err)
	}
	defer closeRef(t, plain)
	if plain.Path != filepath.Join(c.Dir, "rootfs", a.Digest) || !plain.Extracted {
		t.Errorf("Rootfs without a map = %+v", plain)
	}
	assertOwner(t, filepath.Join(plain.Path, "home/u/run"), 0, 0)
}

// TestIDMapKeepsSetID: the chown comes before the chmod, which would
// otherwise lose the setuid and setgid bits a cache keeps.
func TestIDMapKeepsSetID(t *testing.T) {
	needRoot(t)
	c := newCache(t)
	c.DropSetID = false
	c.IDMap = keepIDMap("k1")
	a, _ := memArchive("setid", makeTar(t,
		ownedBy(tDir("d/", 0o2750), 1000, 1000),
		ownedBy(tFile("d/run", "x", 0o6755), 1000, 1000),
	))
	ref, err := c.Rootfs(a)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRef(t, ref)
	for name, want := range map[string]fs.FileMode{
		"d":     fs.ModeDir | fs.ModeSetgid | 0o750,
		"d/run": fs.ModeSetuid | fs.ModeSetgid | 0o755,
	} {
		p := filepath.Join(ref.Path, name)
		assertOwner(t, p, 200000, 300000)
		if got := lstat(t, p).Mode(); got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
}

// assertMappedTree checks a tree of mappedArchive extracted through
// keepIDMap: owners mapped, modes and times as without a map.
func assertMappedTree(t *testing.T, root string) {
	t.Helper()
	const u, g = 200000, 300000
	for _, tc := range []struct {
		name     string
		uid, gid int
		mode     fs.FileMode // for what is no symlink
	}{
		{"", u + 1, g + 1, fs.ModeDir | 0o755},
		{"etc", u + 1, g + 1, fs.ModeDir | 0o755},
		{"etc/passwd", u + 1, g + 1, 0o644},
		{"home", u + 1, g + 1, fs.ModeDir | 0o755}, // a parent no entry lists
		{"home/u", u, g, fs.ModeDir | 0o750},       // setgid dropped
		{"home/u/run", u, g, 0o755},                // setuid and setgid dropped
		{"home/u/run2", u, g, 0o755},
		{"home/u/sh", u, g, 0},
		{"ro", u, g + 65534, fs.ModeDir | 0o555},
		{"ro/nobody", u + 65534, g + 65534, 0o640},
		{"ro/link", u + 65534, g, 0},
		{"usr/lib/libx.so", u + 1, g + 1, 0o644},
		{"tmp", u + 1, g + 1, fs.ModeDir | fs.ModeSticky | 0o777}, // a mount point the archive lacks
	} {
		p := filepath.Join(root, tc.name)
		assertOwner(t, p, tc.uid, tc.gid)
		fi := lstat(t, p)
		if tc.mode != 0 && fi.Mode() != tc.mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), tc.mode)
		}
	}
	if n := nlink(t, filepath.Join(root, "home/u/run")); n != 2 {
		t.Errorf("home/u/run has %d links, want 2", n)
	}
	for name, mt := range map[string]time.Time{
		"etc":        time.Unix(1_500_000_000, 0),
		"home/u":     time.Unix(1_400_000_000, 0),
		"home/u/run": testModTime,
		"home/u/sh":  testModTime,
	} {
		if got := lstat(t, filepath.Join(root, name)).ModTime(); !got.Equal(mt) {
			t.Errorf("%s: mtime %v, want %v", name, got, mt)
		}
	}
}

func TestImageIDMap(t *testing.T) {
	needRoot(t)
	c := newCache(t)
	c.IDMap = keepIDMap("k2")
	entries := mappedArchive()
	img := imageOf(t, "test/mapped", append(entries[:5:5], tFile("gone", "", 0o644)), entries[5:],
		[]tEntry{tWhiteout("", "gone"), ownedBy(tFile("home/u/new", "new\n", 0o600), 1000, 1000)})
	ref := flatten(t, c, img)
	want := filepath.Join(c.Dir, "rootfs", "image-"+strings.TrimPrefix(img.Digest, "sha256:")+"+k2")
	if ref.Path != want || c.ImagePath(img.Digest) != want || ref.Digest != img.Digest {
		t.Errorf("Image = %+v, ImagePath %s, want %s", ref, c.ImagePath(img.Digest), want)
	}
	assertNotExist(t, filepath.Join(ref.Path, "gone"))
	assertOwner(t, filepath.Join(ref.Path, "home/u/new"), 200000, 300000)
	assertMappedTree(t, ref.Path)
	assertNoTemps(t, c)
}

func TestIDMapUnmappedID(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name    string
		entry   tEntry
		wantErr []string
	}{
		{"file uid", ownedBy(tFile("srv/data", "x", 0o644), 70000, 0), []string{`"srv/data"`, "uid 70000"}},
		{"file gid", ownedBy(tFile("srv/data", "x", 0o644), 0, 65536), []string{`"srv/data"`, "gid 65536"}},
		{"directory", ownedBy(tDir("srv/", 0o755), 1000, 100000), []string{`"srv/"`, "gid 100000"}},
		{"symlink", ownedBy(tSymlink("srv/l", "x"), 65536, 0), []string{`"srv/l"`, "uid 65536"}},
		{"hardlink", ownedBy(tHardlink("bin/tool3", "bin/tool"), 4294967295, 0), []string{`"bin/tool3"`, "uid 4294967295"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries := append(goodArchive(), tc.entry, tFile("after", "a", 0o644))
			t.Run("archive", func(t *testing.T) {
				c := newCache(t)
				c.IDMap = keepIDMap("k1")
				a, _ := memArchive("bad.tar.zst", makeTarZst(t, entries...))
				_, err := c.Rootfs(a)
				assertUnmapped(t, err, append(tc.wantErr, "bad.tar.zst"))
				assertNothingCached(t, c)
			})
			t.Run("image", func(t *testing.T) {
				c := newCache(t)
				c.IDMap = keepIDMap("k1")
				img := imageOf(t, "test/bad", goodArchive(), []tEntry{tc.entry})
				_, err := c.Image(img)
				assertUnmapped(t, err, append(tc.wantErr, "test/bad", "layer 2 of 2"))
				assertNothingCached(t, c)
			})
		})
	}
	t.Run("parent no entry lists", func(t *testing.T) {
		// Container root owns them: a map without it cannot give them
		// an owner.
		c := newCache(t)
		c.IDMap = &IDMap{
			UID: []specs.LinuxIDMapping{{ContainerID: 1, HostID: 200000, Size: 65535}},
			GID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 300000, Size: 65536}},
			Key: "noroot",
		}
		a, _ := memArchive("parents.tar", makeTar(t, ownedBy(tFile("a/b", "x", 0o644), 1, 1)))
		_, err := c.Rootfs(a)
		assertUnmapped(t, err, []string{"parents.tar", "uid 0"})
		assertNothingCached(t, c)
	})
}

func assertUnmapped(t *testing.T, err error, want []string) {
	t.Helper()
	var ue *UnmappedIDError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want an *UnmappedIDError", err)
	}
	assertOneLine(t, err, append(want, "subordinate range is too small", "65536", "/etc/subuid", "/etc/subgid"))
}

func TestIDMapRefused(t *testing.T) {
	a, _ := memArchive("good", makeTarZst(t, goodArchive()...))
	for _, tc := range []struct {
		name      string
		rootOwned bool
		key       string
	}{
		{"empty key", false, ""},
		{"upper case", false, "ABC"},
		{"plus", false, "a+b"},
		{"slash", false, "a/b"},
		{"too long", false, strings.Repeat("a", 33)},
		{"root-owned", true, "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			c.RootOwned = tc.rootOwned
			c.IDMap = selfMap(tc.key)
			if ref, err := c.Rootfs(a); err == nil {
				ref.Close()
				t.Errorf("Rootfs with key %q, RootOwned %v: no error", tc.key, tc.rootOwned)
			} else {
				t.Log(err)
			}
			if ref, err := c.Image(imageOf(t, "test/img", goodArchive())); err == nil {
				ref.Close()
				t.Errorf("Image with key %q, RootOwned %v: no error", tc.key, tc.rootOwned)
			}
			assertNothingCached(t, c)
		})
	}
	c := newCache(t)
	c.IDMap = selfMap(strings.Repeat("0z", 16))
	ref, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("a 32-character key: %v", err)
	}
	ref.Close()
}

// TestPruneMappedTrees: only a process that may change mapped trees
// removes them, or what is left of their extraction.
func TestPruneMappedTrees(t *testing.T) {
	c := newCache(t)
	a, _ := memArchive("a", makeTarZst(t, tFile("name", "A", 0o644)))
	img := imageOf(t, "test/img", []tEntry{tFile("name", "I", 0o644)})
	c.IDMap = selfMap("k3")
	for _, open := range []func() (*Ref, error){
		func() (*Ref, error) { return c.Rootfs(a) },
		func() (*Ref, error) { return c.Image(img) },
	} {
		ref, err := open()
		if err != nil {
			t.Fatal(err)
		}
		ref.Close()
	}
	tree, imageTree := c.RootfsPath(a.Digest), c.ImagePath(img.Digest)
	leftover := filepath.Join(c.Dir, "rootfs", ".tmp-"+short(a.Digest)+"+k3-42")
	mustMkdir(t, leftover, 0o700)
	plain := &Cache{Dir: c.Dir, Log: logr.Discard()}
	if got, want := plain.Entries(), []string{tree, imageTree}; !slices.Equal(got, want) {
		t.Errorf("Entries = %q, want %q", got, want)
	}

	assertExist := func(why string, paths ...string) {
		t.Helper()
		for _, p := range paths {
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("%s: %s was removed: %v", why, p, err)
			}
		}
	}

	if err := plain.Prune(); err != nil {
		t.Fatal(err)
	}
	assertExist("a process that may not change mapped trees pruned", tree, tree+".lock", imageTree, imageTree+".lock", leftover)

	keepImages := &Cache{Dir: c.Dir, Log: logr.Discard(), KeepImageTrees: true, MappedTrees: true}
	if err := keepImages.Prune(); err != nil {
		t.Fatal(err)
	}
	assertExist("a prune that keeps images' trees", imageTree, imageTree+".lock")
	for _, p := range []string{tree, tree + ".lock", leftover} {
		assertNotExist(t, p)
	}

	byMap := &Cache{Dir: c.Dir, Log: logr.Discard(), IDMap: selfMap("other")}
	if err := byMap.Prune(); err != nil {
		t.Fatal(err)
	}
	assertNothingCached(t, c)
}

func TestMappedKey(t *testing.T) {
	c := &Cache{Dir: "/cache"}
	hex := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		path        string
		key, digest string
	}{
		{"/cache/rootfs/image-" + hex + "+k1", "k1", "sha256:" + hex},
		{"/cache/rootfs/image-" + hex, "", "sha256:" + hex},
		{"/cache/rootfs/" + hex + "+0z9", "0z9", ""},
		{"/cache/rootfs/" + hex, "", ""},
		{"/cache/rootfs/image-" + hex + "+", "", ""},
		{"/cache/rootfs/image-" + hex + "+K1", "", ""},
		{"/cache/rootfs/image-" + hex + "+k1+k2", "", ""},
		{"/cache/rootfs/image-" + hex + "+" + strings.Repeat("a", 33), "", ""},
		{"/cache/rootfs/image-" + hex[2:] + "+k1", "", ""},
		{"/cache/rootfs/" + hex + ".lock", "", ""},
		{"/cache/rootfs/.tmp-" + hex[:12] + "+k1-42", "", ""},
		{"/cache/other/image-" + hex + "+k1", "", ""},
		{"/cache/runc-" + hex, "", ""},
	} {
		if got := c.MappedKey(tc.path); got != tc.key {
			t.Errorf("MappedKey(%s) = %q, want %q", tc.path, got, tc.key)
		}
		if got := c.ImageDigest(tc.path); got != tc.digest {
			t.Errorf("ImageDigest(%s) = %q, want %q", tc.path, got, tc.digest)
		}
	}
}
