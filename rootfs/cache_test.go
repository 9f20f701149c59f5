package rootfs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/go-logr/logr"
)

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// memArchive returns an Archive of data with its real digest. The returned
// counter counts calls to Open.
func memArchive(name string, data []byte) (*Archive, *atomic.Int32) {
	opens := new(atomic.Int32)
	return &Archive{
		Name:   name,
		Digest: sha256Hex(data),
		Size:   int64(len(data)),
		Open: func() (io.ReadCloser, error) {
			opens.Add(1)
			return io.NopCloser(bytes.NewReader(data)), nil
		},
	}, opens
}

func newCache(t *testing.T) *Cache {
	t.Helper()
	base := t.TempDir()
	makeRemovable(t, base)
	// A directory the cache creates itself.
	return &Cache{Dir: filepath.Join(base, "cache"), Log: logr.Discard(), DropSetID: true}
}

// assertNoTemps fails if the cache holds temporary entries.
func assertNoTemps(t *testing.T, c *Cache) {
	t.Helper()
	for _, dir := range []string{c.Dir, filepath.Join(c.Dir, "rootfs")} {
		for _, n := range dirNames(t, dir) {
			if strings.HasPrefix(n, ".tmp-") {
				t.Errorf("temporary entry %s left in %s", n, dir)
			}
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return string(b)
}

func closeRef(t *testing.T, r *Ref) {
	t.Helper()
	if err := r.Close(); err != nil {
		t.Errorf("Ref.Close: %v", err)
	}
}

func TestRootfsExtractsOnce(t *testing.T) {
	c := newCache(t)
	a, opens := memArchive("good", makeTarZst(t, goodArchive()...))
	wantPath := filepath.Join(c.Dir, "rootfs", a.Digest)

	ref1, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("first Rootfs: %v", err)
	}
	defer closeRef(t, ref1)
	if !ref1.Extracted || ref1.Path != wantPath {
		t.Errorf("first Rootfs = {Path %s, Extracted %v}, want {%s, true}", ref1.Path, ref1.Extracted, wantPath)
	}
	if got := readFile(t, filepath.Join(ref1.Path, "etc/hostname")); got != "box\n" {
		t.Errorf("etc/hostname = %q", got)
	}
	if fi := lstat(t, filepath.Join(ref1.Path, "bin/su")); fi.Mode()&fs.ModeSetuid != 0 {
		t.Errorf("bin/su: mode %v keeps setuid although DropSetID is set", fi.Mode())
	}

	ref2, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("second Rootfs: %v", err)
	}
	defer closeRef(t, ref2)
	if ref2.Extracted || ref2.Path != wantPath {
		t.Errorf("second Rootfs = {Path %s, Extracted %v}, want {%s, false}", ref2.Path, ref2.Extracted, wantPath)
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("the archive was opened %d times, want 1", n)
	}

	assertNoTemps(t, c)
	if got, want := dirNames(t, filepath.Join(c.Dir, "rootfs")), []string{a.Digest, a.Digest + ".lock"}; !slices.Equal(got, want) {
		t.Errorf("rootfs dir holds %q, want %q", got, want)
	}
	for _, d := range []string{c.Dir, filepath.Join(c.Dir, "rootfs")} {
		if got := lstat(t, d).Mode(); got != fs.ModeDir|0o700 {
			t.Errorf("%s: mode %v, want drwx------", d, got)
		}
	}
}

func TestRootfsRootOwned(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a root-owned cache needs root")
	}
	c := newCache(t)
	c.RootOwned = true
	entries := append(goodArchive(),
		tDir("shared/", 0o1777),
		tDir("group/", 0o2775),
		tFile("shared/everyone", "x", 0o666),
	)
	a, _ := memArchive("good", makeTarZst(t, entries...))
	ref, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("Rootfs: %v", err)
	}
	defer closeRef(t, ref)
	// The key does not depend on the uid container root maps to.
	if want := filepath.Join(c.Dir, "rootfs", a.Digest); ref.Path != want {
		t.Errorf("Path = %s, want %s", ref.Path, want)
	}
	data := []byte("runc")
	rref, err := c.Runc(data, sha256Hex(data))
	if err != nil {
		t.Fatalf("Runc: %v", err)
	}
	defer closeRef(t, rref)
	// Nothing is writable by any uid but root.
	err = filepath.WalkDir(c.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi := lstat(t, p)
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: owned by %d:%d, want 0:0", p, st.Uid, st.Gid)
		}
		if fi.Mode()&fs.ModeSymlink == 0 && fi.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s: mode %v, writable by group or others", p, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := lstat(t, filepath.Join(ref.Path, "shared")).Mode(); got != fs.ModeDir|fs.ModeSticky|0o755 {
		t.Errorf("shared: mode %v, want dtrwxr-xr-x", got)
	}
	// The uid container root maps to must be able to reach its tree.
	for _, d := range []string{c.Dir, filepath.Join(c.Dir, "rootfs")} {
		if got := lstat(t, d).Mode(); got != fs.ModeDir|0o711 {
			t.Errorf("%s: mode %v, want drwx--x--x", d, got)
		}
	}
}

// TestRootOwnedRefusesSharedDirs checks that root uses no cache another uid
// could change: that uid could swap runc or the rootfs under root's feet.
func TestRootOwnedRefusesSharedDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a root-owned cache needs root")
	}
	data := []byte("runc")
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, base string) string // returns the cache dir
		want  string
	}{
		{"cache dir owned by another uid", func(t *testing.T, base string) string {
			d := filepath.Join(base, "cache")
			mustMkdir(t, d, 0o711)
			mustChown(t, d, 65534)
			return d
		}, "owned by uid 65534"},
		{"cache dir writable by others", func(t *testing.T, base string) string {
			d := filepath.Join(base, "cache")
			mustMkdir(t, d, 0o711)
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
			return d
		}, "mode 0777"},
		{"rootfs dir owned by another uid", func(t *testing.T, base string) string {
			d := filepath.Join(base, "cache")
			mustMkdir(t, d, 0o711)
			mustMkdir(t, filepath.Join(d, "rootfs"), 0o711)
			mustChown(t, filepath.Join(d, "rootfs"), 65534)
			return d
		}, "owned by uid 65534"},
		{"parent owned by another uid", func(t *testing.T, base string) string {
			p := filepath.Join(base, "user")
			mustMkdir(t, p, 0o755)
			mustChown(t, p, 65534)
			return filepath.Join(p, "cache")
		}, "owned by uid 65534"},
		{"parent writable by others, not sticky", func(t *testing.T, base string) string {
			p := filepath.Join(base, "open")
			mustMkdir(t, p, 0o755)
			if err := os.Chmod(p, 0o777); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(p, "cache")
		}, "mode 0777"},
		{"symlink owned by another uid", func(t *testing.T, base string) string {
			real := filepath.Join(base, "real")
			mustMkdir(t, real, 0o711)
			link := filepath.Join(base, "link")
			if err := os.Symlink(real, link); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(link, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return link
		}, "owned by uid 65534"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			c := &Cache{Dir: tc.setup(t, base), RootOwned: true, Log: logr.Discard(), DropSetID: true}
			_, err := c.Runc(data, sha256Hex(data))
			var ce *CacheError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) || ce.Remedy != RootOnlyDir {
				t.Fatalf("Runc: %v, want a CacheError saying %q with Remedy RootOnlyDir", err, tc.want)
			}
			assertNotExist(t, filepath.Join(c.Dir, "runc-"+sha256Hex(data)))
		})
	}
	// A sticky directory above the cache, as /tmp is, is fine.
	base := t.TempDir()
	sticky := filepath.Join(base, "sticky")
	mustMkdir(t, sticky, 0o755)
	if err := os.Chmod(sticky, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Dir: filepath.Join(sticky, "cache"), RootOwned: true, Log: logr.Discard(), DropSetID: true}
	ref, err := c.Runc(data, sha256Hex(data))
	if err != nil {
		t.Fatalf("Runc under a sticky directory: %v", err)
	}
	closeRef(t, ref)
}

func mustMkdir(t *testing.T, d string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(d, mode); err != nil {
		t.Fatal(err)
	}
}

func mustChown(t *testing.T, p string, id int) {
	t.Helper()
	if err := os.Chown(p, id, id); err != nil {
		t.Fatal(err)
	}
}

func TestRootfsDigestMismatch(t *testing.T) {
	c := newCache(t)
	data := makeTarZst(t, goodArchive()...)
	a, _ := memArchive("good", data)
	wrong := sha256Hex([]byte("something else"))
	a.Digest = wrong

	ref, err := c.Rootfs(a)
	if err == nil {
		closeRef(t, ref)
		t.Fatal("Rootfs succeeded, want a digest mismatch")
	}
	var dm *DigestMismatchError
	if !errors.As(err, &dm) {
		t.Fatalf("Rootfs: got %v (%T), want *DigestMismatchError", err, err)
	}
	if dm.Expected != wrong || dm.Actual != sha256Hex(data) {
		t.Errorf("DigestMismatchError = %+v, want Expected %s, Actual %s", dm, wrong, sha256Hex(data))
	}
	// No tree, no temporary directory, no lock file for the key.
	if got := dirNames(t, filepath.Join(c.Dir, "rootfs")); len(got) != 0 {
		t.Errorf("rootfs dir holds %q, want nothing", got)
	}
}

func TestRootfsBadArchive(t *testing.T) {
	good := makeTarZst(t, goodArchive()...)
	tests := []struct {
		name    string
		data    []byte
		wantErr func(error) bool
	}{
		{
			name: "dot-dot entry",
			data: makeTarZst(t, tFile("../evil", "pwned", 0o644)),
			wantErr: func(err error) bool {
				var ue *UnsafeEntryError
				return errors.As(err, &ue) && ue.Entry == "../evil"
			},
		},
		{
			name: "write through symlink",
			data: makeTarZst(t, tSymlink("link", ".."), tFile("link/evil", "pwned", 0o644)),
			wantErr: func(err error) bool {
				var ue *UnsafeEntryError
				return errors.As(err, &ue) && ue.Entry == "link/evil"
			},
		},
		{
			name:    "not an archive",
			data:    bytes.Repeat([]byte("garbage "), 100),
			wantErr: func(err error) bool { return errors.Is(err, ErrNotArchive) },
		},
		{
			name:    "truncated zstd",
			data:    good[:len(good)/2],
			wantErr: func(err error) bool { return err != nil },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			// Its digest is right: the content is what is wrong.
			a, _ := memArchive(tc.name, tc.data)
			ref, err := c.Rootfs(a)
			if err == nil {
				closeRef(t, ref)
				t.Fatal("Rootfs succeeded, want an error")
			}
			if !tc.wantErr(err) {
				t.Errorf("Rootfs: unexpected error %v (%T)", err, err)
			}
			if got := dirNames(t, filepath.Join(c.Dir, "rootfs")); len(got) != 0 {
				t.Errorf("rootfs dir holds %q, want nothing", got)
			}
			if got, want := dirNames(t, c.Dir), []string{"lock", "rootfs"}; !slices.Equal(got, want) {
				t.Errorf("cache dir holds %q, want %q", got, want)
			}
		})
	}
}

// A plain tar cut at an entry boundary reads as a complete, shorter archive;
// only the digest tells.
func TestRootfsTruncatedPlainTar(t *testing.T) {
	c := newCache(t)
	full := makeTar(t, tFile("a", "first", 0o644), tFile("b", "second", 0o644))
	a, _ := memArchive("cut", full[:1024]) // header and block of "a"
	a.Digest = sha256Hex(full)
	ref, err := c.Rootfs(a)
	if err == nil {
		closeRef(t, ref)
		t.Fatal("Rootfs of a truncated archive succeeded")
	}
	var dm *DigestMismatchError
	if !errors.As(err, &dm) {
		t.Errorf("Rootfs: got %v (%T), want *DigestMismatchError", err, err)
	}
	if got := dirNames(t, filepath.Join(c.Dir, "rootfs")); len(got) != 0 {
		t.Errorf("rootfs dir holds %q, want nothing", got)
	}
}

func TestRootfsRemovesLeftoverTemps(t *testing.T) {
	c := newCache(t)
	rootfs := filepath.Join(c.Dir, "rootfs")
	// What an extraction killed half-way leaves: a tree with a read-only
	// directory holding a file, which only root could remove as it is.
	leftover := filepath.Join(rootfs, ".tmp-0123456789ab-42")
	ro := filepath.Join(leftover, "ro")
	if err := os.MkdirAll(ro, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	// And a runc binary killed while being written.
	if err := os.WriteFile(filepath.Join(c.Dir, ".tmp-runc-42"), []byte("half a runc"), 0o600); err != nil {
		t.Fatal(err)
	}

	a, _ := memArchive("good", makeTarZst(t, goodArchive()...))
	ref, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("Rootfs: %v", err)
	}
	defer closeRef(t, ref)
	if !ref.Extracted {
		t.Errorf("Rootfs did not extract")
	}
	assertNotExist(t, leftover)
	assertNotExist(t, filepath.Join(c.Dir, ".tmp-runc-42"))
	assertNoTemps(t, c)
}

func TestPrune(t *testing.T) {
	c := newCache(t)
	a, _ := memArchive("A", makeTarZst(t, tFile("name", "A", 0o644)))
	b, _ := memArchive("B", makeTarZst(t, tFile("name", "B", 0o644)))
	runcData := []byte("#!/bin/sh\necho runc\n")

	refA, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("Rootfs(A): %v", err)
	}
	refB, err := c.Rootfs(b)
	if err != nil {
		t.Fatalf("Rootfs(B): %v", err)
	}
	refRunc, err := c.Runc(runcData, sha256Hex(runcData))
	if err != nil {
		t.Fatalf("Runc: %v", err)
	}
	pathA, pathB, pathRunc := refA.Path, refB.Path, refRunc.Path
	// B is kept by name from now on, not by its Ref.
	closeRef(t, refB)

	steps := []struct {
		name       string
		before     func()
		keep       []string
		wantExist  []string
		wantAbsent []string
	}{
		{
			name:      "in use or kept",
			keep:      []string{pathB},
			wantExist: []string{pathA, pathB, pathRunc},
		},
		{
			name:       "A released",
			before:     func() { closeRef(t, refA) },
			keep:       []string{pathB},
			wantExist:  []string{pathB, pathRunc},
			wantAbsent: []string{pathA, pathA + ".lock"},
		},
		{
			name:       "runc released, nothing kept",
			before:     func() { closeRef(t, refRunc) },
			wantAbsent: []string{pathB, pathB + ".lock", pathRunc, pathRunc + ".lock"},
		},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		if err := c.Prune(s.keep...); err != nil {
			t.Fatalf("%s: Prune: %v", s.name, err)
		}
		for _, p := range s.wantExist {
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("%s: %s was pruned: %v", s.name, filepath.Base(p), err)
			}
		}
		for _, p := range s.wantAbsent {
			assertNotExist(t, p)
		}
		assertNoTemps(t, c)
	}
	if got := dirNames(t, filepath.Join(c.Dir, "rootfs")); len(got) != 0 {
		t.Errorf("rootfs dir holds %q after pruning everything", got)
	}

	// A pruned entry is extracted again on demand.
	ref, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("Rootfs(A) after pruning: %v", err)
	}
	defer closeRef(t, ref)
	if !ref.Extracted || readFile(t, filepath.Join(ref.Path, "name")) != "A" {
		t.Errorf("Rootfs(A) after pruning: Extracted %v", ref.Extracted)
	}
}

func TestRunc(t *testing.T) {
	c := newCache(t)
	data := []byte("#!/bin/sh\necho fake runc\n")
	digest := sha256Hex(data)
	wantPath := filepath.Join(c.Dir, "runc-"+digest)

	ref1, err := c.Runc(data, digest)
	if err != nil {
		t.Fatalf("first Runc: %v", err)
	}
	defer closeRef(t, ref1)
	if !ref1.Extracted || ref1.Path != wantPath {
		t.Errorf("first Runc = {Path %s, Extracted %v}, want {%s, true}", ref1.Path, ref1.Extracted, wantPath)
	}
	fi1 := lstat(t, wantPath)
	if fi1.Mode() != 0o700 {
		t.Errorf("runc mode %v, want -rwx------", fi1.Mode())
	}
	if got := readFile(t, wantPath); got != string(data) {
		t.Errorf("runc content %q, want %q", got, data)
	}

	ref2, err := c.Runc(data, digest)
	if err != nil {
		t.Fatalf("second Runc: %v", err)
	}
	defer closeRef(t, ref2)
	if ref2.Extracted || ref2.Path != wantPath {
		t.Errorf("second Runc = {Path %s, Extracted %v}, want {%s, false}", ref2.Path, ref2.Extracted, wantPath)
	}
	fi2 := lstat(t, wantPath)
	if !os.SameFile(fi1, fi2) || !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Errorf("second Runc rewrote the binary: inode %d -> %d, mtime %v -> %v",
			fi1.Sys().(*syscall.Stat_t).Ino, fi2.Sys().(*syscall.Stat_t).Ino, fi1.ModTime(), fi2.ModTime())
	}
	assertNoTemps(t, c)
}

func TestRuncReplacesWrongSize(t *testing.T) {
	c := newCache(t)
	data := []byte("#!/bin/sh\necho fake runc\n")
	digest := sha256Hex(data)
	if err := os.Mkdir(c.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "runc-"+digest), []byte("cut"), 0o700); err != nil {
		t.Fatal(err)
	}
	ref, err := c.Runc(data, digest)
	if err != nil {
		t.Fatalf("Runc: %v", err)
	}
	defer closeRef(t, ref)
	if !ref.Extracted {
		t.Errorf("Runc kept a binary of the wrong size")
	}
	if got := readFile(t, ref.Path); got != string(data) {
		t.Errorf("runc content %q, want %q", got, data)
	}
}

func TestRuncDigestMismatch(t *testing.T) {
	c := newCache(t)
	data := []byte("#!/bin/sh\necho fake runc\n")
	wrong := sha256Hex([]byte("another runc"))
	ref, err := c.Runc(data, wrong)
	if err == nil {
		closeRef(t, ref)
		t.Fatal("Runc succeeded with a wrong digest")
	}
	var dm *DigestMismatchError
	if !errors.As(err, &dm) {
		t.Fatalf("Runc: got %v (%T), want *DigestMismatchError", err, err)
	}
	if dm.Expected != wrong || dm.Actual != sha256Hex(data) {
		t.Errorf("DigestMismatchError = %+v", dm)
	}
	for _, n := range dirNames(t, c.Dir) {
		if strings.HasPrefix(n, "runc-") || strings.HasPrefix(n, ".tmp-") {
			t.Errorf("%s left in the cache dir", n)
		}
	}
}

func TestCacheDirNotUsable(t *testing.T) {
	tests := []struct {
		name     string
		dir      func(t *testing.T) string
		needUser bool // root may write anywhere
		remedy   Remedy
	}{
		{
			name: "parent is a file",
			dir: func(t *testing.T) string {
				f := filepath.Join(t.TempDir(), "file")
				if err := os.WriteFile(f, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(f, "cache")
			},
		},
		{
			name: "dir is a file",
			dir: func(t *testing.T) string {
				f := filepath.Join(t.TempDir(), "file")
				if err := os.WriteFile(f, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				return f
			},
		},
		{
			name: "read-only dir",
			dir: func(t *testing.T) string {
				d := filepath.Join(t.TempDir(), "ro")
				if err := os.Mkdir(d, 0o500); err != nil {
					t.Fatal(err)
				}
				makeRemovable(t, d)
				return d
			},
			needUser: true,
			remedy:   FillOnce,
		},
	}
	data := []byte("runc")
	a, _ := memArchive("good", makeTarZst(t, goodArchive()...))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needUser && os.Geteuid() == 0 {
				t.Skip("root may write into a read-only directory")
			}
			c := &Cache{Dir: tc.dir(t), Log: logr.Discard(), DropSetID: true}
			calls := []struct {
				name string
				call func() error
			}{
				{"Rootfs", func() error {
					ref, err := c.Rootfs(a)
					if err == nil {
						ref.Close()
					}
					return err
				}},
				{"Runc", func() error {
					ref, err := c.Runc(data, sha256Hex(data))
					if err == nil {
						ref.Close()
					}
					return err
				}},
				{"Prune", func() error { return c.Prune() }},
			}
			for _, call := range calls {
				err := call.call()
				if tc.needUser && call.name == "Prune" {
					// A cache this process cannot write into is left
					// alone: there is nothing to prune.
					if err != nil {
						t.Errorf("Prune of a read-only cache: %v, want nil", err)
					}
					continue
				}
				var ce *CacheError
				if !errors.As(err, &ce) {
					t.Errorf("%s: got %v (%T), want *CacheError", call.name, err, err)
					continue
				}
				if ce.Dir != c.Dir {
					t.Errorf("%s: CacheError.Dir = %s, want %s", call.name, ce.Dir, c.Dir)
				}
				if ce.Remedy != tc.remedy {
					t.Errorf("%s: CacheError.Remedy = %d, want %d", call.name, ce.Remedy, tc.remedy)
				}
			}
		})
	}
}

// Helper processes: the tests below run this test binary again with
// helperEnv set, so that several processes use one cache.
const (
	helperEnv        = "MRTD_TEST_HELPER"
	helperCacheEnv   = "MRTD_TEST_HELPER_CACHE"
	helperArchiveEnv = "MRTD_TEST_HELPER_ARCHIVE"
	helperResult     = "HELPER-RESULT"
	helperStalled    = "HELPER-STALLED"
)

// TestHelperProcess is not a test: it is the body of the helper processes.
//
//	MRTD_TEST_HELPER=extract  waits for its stdin to reach EOF, then calls
//	                          Rootfs and prints "HELPER-RESULT <extracted> <path>"
//	MRTD_TEST_HELPER=stall    calls Rootfs with an archive that stops half-way:
//	                          it prints HELPER-STALLED and blocks reading stdin
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	c := &Cache{Dir: os.Getenv(helperCacheEnv), Log: logr.Discard(), DropSetID: true}
	a, err := FileArchive(os.Getenv(helperArchiveEnv))
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	switch mode {
	case "extract":
		// The parent closes our stdin once every helper has started.
		if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
			t.Fatalf("helper: waiting on stdin: %v", err)
		}
	case "stall":
		open := a.Open
		a.Open = func() (io.ReadCloser, error) {
			rc, err := open()
			if err != nil {
				return nil, err
			}
			return &stallingReader{ReadCloser: rc, left: a.Size / 2}, nil
		}
	default:
		t.Fatalf("helper: unknown mode %q", mode)
	}
	ref, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("helper: Rootfs: %v", err)
	}
	fmt.Printf("%s %t %s\n", helperResult, ref.Extracted, ref.Path)
	ref.Close()
}

// stallingReader passes left bytes through, then reports itself stalled on
// stdout and blocks until stdin is closed, which fails the read.
type stallingReader struct {
	io.ReadCloser
	left    int64
	stalled bool
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		if !r.stalled {
			r.stalled = true
			fmt.Printf("%s\n", helperStalled)
		}
		io.Copy(io.Discard, os.Stdin)
		return 0, errors.New("helper: stdin closed while stalled")
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.ReadCloser.Read(p)
	r.left -= int64(n)
	return n, err
}

// helperCommand returns a command running TestHelperProcess in mode.
func helperCommand(t *testing.T, mode, cacheDir, archive string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(),
		helperEnv+"="+mode,
		helperCacheEnv+"="+cacheDir,
		helperArchiveEnv+"="+archive,
	)
	return cmd
}

// manyFiles returns an archive of n small files in 50 directories, the same
// for the same n.
func manyFiles(n int) []tEntry {
	var entries []tEntry
	for d := 0; d < 50; d++ {
		entries = append(entries, tDir(fmt.Sprintf("d%02d/", d), 0o755))
	}
	for i := 0; i < n; i++ {
		body := strings.Repeat(fmt.Sprintf("file %d\n", i), 1+i%7)
		entries = append(entries, tFile(fmt.Sprintf("d%02d/f%05d", i%50, i), body, 0o644))
	}
	return entries
}

// assertManyFiles checks a tree extracted from manyFiles(n).
func assertManyFiles(t *testing.T, root string, n int) {
	t.Helper()
	count := 0
	for d := 0; d < 50; d++ {
		count += len(dirNames(t, filepath.Join(root, fmt.Sprintf("d%02d", d))))
	}
	if count != n {
		t.Errorf("%s holds %d files, want %d", root, count, n)
	}
	last := n - 1
	want := strings.Repeat(fmt.Sprintf("file %d\n", last), 1+last%7)
	if got := readFile(t, filepath.Join(root, fmt.Sprintf("d%02d/f%05d", last%50, last))); got != want {
		t.Errorf("last file holds %q, want %q", got, want)
	}
}

func writeArchiveFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rootfs.tar.zst")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRootfsConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const procs = 6
	const files = 3000
	c := newCache(t)
	archive := writeArchiveFile(t, makeTarZst(t, manyFiles(files)...))

	// Every helper waits for EOF on this pipe: closing its write end
	// releases them all at once.
	start, release, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer release.Close()
	type helper struct {
		cmd            *exec.Cmd
		stdout, stderr bytes.Buffer
	}
	helpers := make([]*helper, procs)
	for i := range helpers {
		h := &helper{cmd: helperCommand(t, "extract", c.Dir, archive)}
		h.cmd.Stdin = start
		h.cmd.Stdout = &h.stdout
		h.cmd.Stderr = &h.stderr
		if err := h.cmd.Start(); err != nil {
			t.Fatalf("starting helper %d: %v", i, err)
		}
		t.Cleanup(func() { h.cmd.Process.Kill() })
		helpers[i] = h
	}
	start.Close()
	release.Close()

	extracted := 0
	paths := map[string]int{}
	for i, h := range helpers {
		if err := h.cmd.Wait(); err != nil {
			t.Errorf("helper %d: %v\nstdout:\n%s\nstderr:\n%s", i, err, h.stdout.String(), h.stderr.String())
			continue
		}
		var result string
		for _, line := range strings.Split(h.stdout.String(), "\n") {
			if strings.HasPrefix(line, helperResult+" ") {
				result = strings.TrimPrefix(line, helperResult+" ")
			}
		}
		flag, path, ok := strings.Cut(result, " ")
		ex, err := strconv.ParseBool(flag)
		if !ok || err != nil {
			t.Errorf("helper %d printed no result:\n%s", i, h.stdout.String())
			continue
		}
		if ex {
			extracted++
		}
		paths[path]++
	}
	if t.Failed() {
		t.FailNow()
	}
	if extracted != 1 {
		t.Errorf("%d helpers extracted the archive, want exactly 1", extracted)
	}
	a, err := FileArchive(archive)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(c.Dir, "rootfs", a.Digest)
	if len(paths) != 1 || paths[want] != procs {
		t.Errorf("helpers returned paths %v, want %s from all %d", paths, want, procs)
	}
	assertNoTemps(t, c)
	assertManyFiles(t, want, files)
}

func TestRootfsRecoversFromKilledExtraction(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	const files = 4000
	c := newCache(t)
	// Plain tar: the helper extracts synchronously with its reads, so files
	// are on disk by the time it stalls.
	archive := writeArchiveFile(t, makeTar(t, manyFiles(files)...))

	cmd := helperCommand(t, "stall", c.Dir, archive)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })

	// Wait until the helper is half-way through the archive.
	stalled := false
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == helperStalled {
			stalled = true
			break
		}
	}
	if !stalled {
		cmd.Wait()
		t.Fatalf("the helper did not stall:\nstdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
	}
	rootfs := filepath.Join(c.Dir, "rootfs")
	var temps []string
	for _, n := range dirNames(t, rootfs) {
		if strings.HasPrefix(n, ".tmp-") {
			temps = append(temps, n)
		}
	}
	if len(temps) != 1 {
		t.Fatalf("rootfs dir holds temporary dirs %q while the helper extracts, want one", temps)
	}
	if n := len(dirNames(t, filepath.Join(rootfs, temps[0]))); n == 0 {
		t.Errorf("the helper stalled half-way but extracted nothing")
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper: %v, want killed by SIGKILL\nstderr:\n%s", err, stderr.String())
	}

	a, err := FileArchive(archive)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("Rootfs after the helper was killed: %v", err)
	}
	defer closeRef(t, ref)
	if !ref.Extracted {
		t.Errorf("Rootfs after the helper was killed did not extract")
	}
	assertNotExist(t, filepath.Join(rootfs, temps[0]))
	assertNoTemps(t, c)
	assertManyFiles(t, ref.Path, files)
}
