package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
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
