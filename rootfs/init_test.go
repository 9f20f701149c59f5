package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/go-logr/logr"
)

func TestInit(t *testing.T) {
	c := newCache(t)
	data := []byte("#!/bin/sh\necho fake init\n")
	digest := sha256Hex(data)
	wantPath := filepath.Join(c.Dir, "init-"+digest)

	ref1, err := c.Init(data, digest)
	if err != nil {
		t.Fatalf("first Init: %v", err)
	}
	if !ref1.Extracted || ref1.Path != wantPath || c.InitPath(digest) != wantPath {
		t.Errorf("first Init = {Path %s, Extracted %v}, InitPath %s, want {%s, true}", ref1.Path, ref1.Extracted, c.InitPath(digest), wantPath)
	}
	// The containers' users run it: container root maps to another uid
	// than the cache's owner when mrtd runs as root.
	fi1 := lstat(t, wantPath)
	if fi1.Mode() != 0o755 {
		t.Errorf("init mode %v, want -rwxr-xr-x", fi1.Mode())
	}
	if got := readFile(t, wantPath); got != string(data) {
		t.Errorf("init content %q, want %q", got, data)
	}
	ref2, err := c.Init(data, digest)
	if err != nil {
		t.Fatalf("second Init: %v", err)
	}
	if ref2.Extracted || !os.SameFile(fi1, lstat(t, wantPath)) {
		t.Errorf("second Init rewrote the binary (Extracted %v)", ref2.Extracted)
	}
	if got := c.Entries(); !slices.Contains(got, wantPath) {
		t.Errorf("Entries = %q, want %s among them", got, wantPath)
	}

	// Pruned like runc: kept while in use or named, removed after.
	if err := c.Prune(); err != nil {
		t.Fatal(err)
	}
	lstat(t, wantPath)
	closeRef(t, ref1)
	closeRef(t, ref2)
	if err := c.Prune(wantPath); err != nil {
		t.Fatal(err)
	}
	lstat(t, wantPath)
	if err := c.Prune(); err != nil {
		t.Fatal(err)
	}
	assertNotExist(t, wantPath)
	assertNotExist(t, wantPath+".lock")
	assertNoTemps(t, c)
}

func TestInitDigestMismatch(t *testing.T) {
	c := newCache(t)
	data := []byte("#!/bin/sh\necho fake init\n")
	wrong := sha256Hex([]byte("another init"))
	ref, err := c.Init(data, wrong)
	if err == nil {
		closeRef(t, ref)
		t.Fatal("Init succeeded with a wrong digest")
	}
	var dm *DigestMismatchError
	if !errors.As(err, &dm) || dm.Name != "embedded init" {
		t.Fatalf("Init: got %v (%T), want *DigestMismatchError for the embedded init", err, err)
	}
	assertNotExist(t, c.InitPath(wrong))
	assertNoTemps(t, c)
}

// withBuiltin makes Prepare see e (or err) as this binary's assets.
func withBuiltin(t *testing.T, e *Embedded, err error) {
	t.Helper()
	old := builtin
	builtin = func() (*Embedded, error) { return e, err }
	t.Cleanup(func() { builtin = old })
}

func TestPreparedInit(t *testing.T) {
	initData := []byte("#!/bin/sh\necho fake init\n")
	emb := &Embedded{Init: initData, InitDigest: sha256Hex(initData), InitVersion: "fake 1"}
	emb.RuncDigest = sha256Hex([]byte("runc"))
	emb.RootfsDigest = sha256Hex([]byte("rootfs"))
	withBuiltin(t, emb, nil)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	archive := writeArchiveFile(t, makeTarZst(t, goodArchive()...))
	prepare := func() *Prepared {
		t.Helper()
		p, err := Prepare(Options{Rootfs: ArchiveFile(archive), Runc: runcFile(t), CacheDir: cacheDir}, logr.Discard())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	initPath := (&Cache{Dir: cacheDir}).InitPath(emb.InitDigest)

	p := prepare()
	if _, err := os.Lstat(initPath); err == nil {
		t.Errorf("Prepare wrote %s before Init was asked for", initPath)
	}
	got, err := p.Init()
	if err != nil {
		t.Fatal(err)
	}
	if got != initPath {
		t.Errorf("Init = %s, want %s", got, initPath)
	}
	if again, err := p.Init(); err != nil || again != got {
		t.Errorf("second Init = %s, %v; want %s", again, err, got)
	}
	if u := (&Cache{Dir: cacheDir}).Usage(initPath); !u.InUse {
		t.Errorf("the init is not held in use after Init: %+v", u)
	}
	p.Close()
	if u := (&Cache{Dir: cacheDir}).Usage(initPath); u.InUse {
		t.Errorf("the init is held in use after Close: %+v", u)
	}
	// Another start of this binary keeps it, unused; a cache without it
	// in the keep list removes it.
	prepare().Close()
	lstat(t, initPath)
	if err := (&Cache{Dir: cacheDir, Log: logr.Discard()}).Prune(); err != nil {
		t.Fatal(err)
	}
	assertNotExist(t, initPath)
}

func TestPreparedInitWithoutAssets(t *testing.T) {
	withBuiltin(t, nil, ErrNotEmbedded)
	withMountPoints := t.TempDir()
	for _, mp := range MountPoints {
		mustMkdir(t, filepath.Join(withMountPoints, mp), 0o755)
	}
	p, err := Prepare(Options{Rootfs: Dir(withMountPoints), Runc: runcFile(t), CacheDir: filepath.Join(t.TempDir(), "cache")}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got, err := p.Init(); !errors.Is(err, ErrNoInit) {
		t.Errorf("Init = %q, %v; want ErrNoInit", got, err)
	}
}
