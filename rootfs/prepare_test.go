package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// runcFile writes an executable standing in for runc.
func runcFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "runc")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrepare(t *testing.T) {
	withMountPoints := t.TempDir()
	for _, mp := range MountPoints {
		mustMkdir(t, filepath.Join(withMountPoints, mp), 0o755)
	}
	archive := writeArchiveFile(t, makeTarZst(t, goodArchive()...))
	digest := sha256Hex(mustRead(t, archive))

	tests := []struct {
		name       string
		rootfs     Source
		wantRootfs func(cacheDir string) string
		wantDigest string
	}{
		{"directory", Dir(withMountPoints), func(string) string { return withMountPoints }, "dir"},
		{"archive file", ArchiveFile(archive), func(dir string) string { return (&Cache{Dir: dir}).RootfsPath(digest) }, digest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cacheDir := filepath.Join(t.TempDir(), "cache")
			runc := runcFile(t)
			p, err := Prepare(Options{Rootfs: tc.rootfs, Runc: runc, CacheDir: cacheDir}, logr.Discard())
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			got := []string{p.Runc, p.Rootfs, p.RuncVersion, p.RootfsDigest}
			want := []string{runc, tc.wantRootfs(cacheDir), "external", tc.wantDigest}
			if !slices.Equal(got, want) {
				t.Errorf("Prepare = runc, rootfs, versions %q, want %q", got, want)
			}
		})
	}
}

// TestPrepareKeepsWhatIsInUse: Prepare prunes what no process uses, not
// what another Prepared holds.
func TestPrepareKeepsWhatIsInUse(t *testing.T) {
	cacheDir := filepath.Join(t.TempDir(), "cache")
	one := writeArchiveFile(t, makeTarZst(t, goodArchive()...))
	two := writeArchiveFile(t, makeTarZst(t, append(goodArchive(), tFile("two", "2\n", 0o644))...))
	three := writeArchiveFile(t, makeTarZst(t, append(goodArchive(), tFile("three", "3\n", 0o644))...))
	runc := runcFile(t)
	prepare := func(archive string) *Prepared {
		t.Helper()
		p, err := Prepare(Options{Rootfs: ArchiveFile(archive), Runc: runc, CacheDir: cacheDir}, logr.Discard())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1 := prepare(one)
	defer p1.Close()
	p2 := prepare(two)
	p2.Close()
	p3 := prepare(three)
	defer p3.Close()
	got := dirNames(t, filepath.Join(cacheDir, "rootfs"))
	want := []string{p1.RootfsDigest, p1.RootfsDigest + ".lock", p3.RootfsDigest, p3.RootfsDigest + ".lock"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("rootfs/ holds %q, want %q: the closed entry pruned, the open ones kept", got, want)
	}
}

func TestPrepareErrors(t *testing.T) {
	noMountPoints := t.TempDir()
	mustMkdir(t, filepath.Join(noMountPoints, "proc"), 0o755)
	runc := runcFile(t)

	t.Run("directory without mount points", func(t *testing.T) {
		_, err := Prepare(Options{Rootfs: Dir(noMountPoints), Runc: runc, CacheDir: t.TempDir()}, logr.Discard())
		var mp *MountPointsError
		if !errors.As(err, &mp) || mp.Dir != noMountPoints || !slices.Equal(mp.Missing, []string{"/sys", "/dev", "/tmp", "/run"}) {
			t.Errorf("Prepare: %v, want a MountPointsError for /sys, /dev, /tmp and /run", err)
		}
	})
	t.Run("embedded, in a binary without", func(t *testing.T) {
		if _, err := Builtin(); err == nil {
			t.Skip("this test binary carries the embedded runc and rootfs")
		}
		for _, opts := range []Options{{Runc: runc}, {Rootfs: Dir(noMountPoints)}} {
			opts.CacheDir = t.TempDir()
			if _, err := Prepare(opts, logr.Discard()); !errors.Is(err, ErrNotEmbedded) {
				t.Errorf("Prepare(%+v): %v, want ErrNotEmbedded", opts, err)
			}
		}
	})
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPrepareMap: with Options.Map, Prepare holds the tree and the same
// tree through the map Map returns, and returns the latter.
func TestPrepareMap(t *testing.T) {
	archive := writeArchiveFile(t, makeTarZst(t, goodArchive()...))
	digest := sha256Hex(mustRead(t, archive))
	runc := runcFile(t)
	withMountPoints := t.TempDir()
	for _, mp := range MountPoints {
		mustMkdir(t, filepath.Join(withMountPoints, mp), 0o755)
	}
	errMap := errors.New("no such user")

	tests := []struct {
		name         string
		rootfs       Source
		m            *IDMap
		err          error
		wantMapped   bool
		wantUnmapped func(cacheDir string) string
	}{
		{"mapped", ArchiveFile(archive), selfMap("k1"), nil, true, func(dir string) string { return (&Cache{Dir: dir}).RootfsPath(digest) }},
		{"no map", ArchiveFile(archive), nil, nil, false, func(dir string) string { return (&Cache{Dir: dir}).RootfsPath(digest) }},
		{"map error", ArchiveFile(archive), selfMap("k1"), errMap, false, func(dir string) string { return (&Cache{Dir: dir}).RootfsPath(digest) }},
		{"directory in place", Dir(withMountPoints), selfMap("k1"), nil, false, func(string) string { return withMountPoints }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cacheDir := filepath.Join(t.TempDir(), "cache")
			unmapped := tc.wantUnmapped(cacheDir)
			var called []string
			p, err := Prepare(Options{
				Rootfs: tc.rootfs, Runc: runc, CacheDir: cacheDir, MappedTrees: true,
				Map: func(tree string) (*IDMap, error) {
					called = append(called, tree)
					return tc.m, tc.err
				},
			}, logr.Discard())
			if !slices.Equal(called, []string{unmapped}) {
				t.Errorf("Map called with %q, want %s once", called, unmapped)
			}
			other := &Cache{Dir: cacheDir, MappedTrees: true, Log: logr.Discard()}
			if tc.err != nil {
				if err != tc.err {
					t.Fatalf("Prepare: %v, want Map's error as is", err)
				}
				if u := other.Usage(unmapped); u.InUse {
					t.Errorf("the tree is still held after Prepare failed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			wantRootfs, wantUnmapped := unmapped, ""
			if tc.wantMapped {
				wantRootfs, wantUnmapped = (&Cache{Dir: cacheDir, IDMap: tc.m}).RootfsPath(digest), unmapped
			}
			if p.Rootfs != wantRootfs || p.Unmapped != wantUnmapped {
				t.Errorf("Prepare = Rootfs %s, Unmapped %q, want %s, %q", p.Rootfs, p.Unmapped, wantRootfs, wantUnmapped)
			}
			if _, ok := tc.rootfs.(ArchiveFile); ok && p.RootfsDigest != digest {
				t.Errorf("RootfsDigest = %s, want %s", p.RootfsDigest, digest)
			}
			if !tc.wantMapped {
				for _, n := range dirNames(t, filepath.Join(cacheDir, "rootfs")) {
					if strings.Contains(n, "+") {
						t.Errorf("a mapped entry %s with no map to make it", n)
					}
				}
				return
			}
			// Both held: another process cannot prune them.
			if err := other.Prune(); err != nil {
				t.Fatal(err)
			}
			for _, tree := range []string{p.Rootfs, p.Unmapped} {
				if _, err := os.Stat(tree); err != nil || !other.Usage(tree).InUse {
					t.Errorf("%s: not held (%v)", tree, err)
				}
			}
			p.Close()
			if err := other.Prune(); err != nil {
				t.Fatal(err)
			}
			assertNotExist(t, p.Rootfs)
			assertNotExist(t, p.Unmapped)
		})
	}
}
