package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// recordSyncs replaces syncFS and syncDir for the test with fns that record
// their calls (and may fail), and calls check before each real sync.
func recordSyncs(t *testing.T, fail map[string]error, check func(op, dir string)) *[]string {
	t.Helper()
	var calls []string
	realFS, realDir := syncFS, syncDir
	t.Cleanup(func() { syncFS, syncDir = realFS, realDir })
	syncFS = func(dir string) error {
		calls = append(calls, "syncfs "+dir)
		check("syncfs", dir)
		if err := fail["syncfs"]; err != nil {
			return err
		}
		return realFS(dir)
	}
	syncDir = func(dir string) error {
		calls = append(calls, "fsync "+dir)
		check("fsync", dir)
		if err := fail["fsync"]; err != nil {
			return err
		}
		return realDir(dir)
	}
	return &calls
}

// TestRootfsPublishIsDurable checks the order that makes an extracted tree
// survive a power loss: its data reach the disk before the rename that
// publishes it, and the rename reaches the disk before Rootfs returns.
func TestRootfsPublishIsDurable(t *testing.T) {
	c := newCache(t)
	a, _ := memArchive("good", makeTarZst(t, goodArchive()...))
	final := filepath.Join(c.Dir, "rootfs", a.Digest)
	calls := recordSyncs(t, nil, func(op, dir string) {
		switch op {
		case "syncfs":
			// The whole tree is written, under its temporary name.
			if !strings.HasPrefix(filepath.Base(dir), ".tmp-") || filepath.Dir(dir) != filepath.Dir(final) {
				t.Errorf("syncfs of %s, want the temporary tree", dir)
			} else if got := readFile(t, filepath.Join(dir, "etc/hostname")); got != "box\n" {
				t.Errorf("syncfs before the tree was written: etc/hostname = %q", got)
			}
			assertNotExist(t, final)
		case "fsync":
			if _, err := os.Stat(final); err != nil {
				t.Errorf("fsync of %s before the rename: %v", dir, err)
			}
		}
	})
	ref, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("Rootfs: %v", err)
	}
	defer closeRef(t, ref)
	if len(*calls) != 2 || !strings.HasPrefix((*calls)[0], "syncfs ") || (*calls)[1] != "fsync "+filepath.Dir(final) {
		t.Errorf("syncs %q, want a syncfs of the temporary tree, then an fsync of %s", *calls, filepath.Dir(final))
	}

	// A warm start syncs nothing.
	*calls = nil
	ref2, err := c.Rootfs(a)
	if err != nil {
		t.Fatalf("warm Rootfs: %v", err)
	}
	closeRef(t, ref2)
	if len(*calls) != 0 {
		t.Errorf("a warm start synced: %q", *calls)
	}
}

func TestRuncPublishIsDurable(t *testing.T) {
	c := newCache(t)
	data := []byte("runc")
	p := filepath.Join(c.Dir, "runc-"+sha256Hex(data))
	calls := recordSyncs(t, nil, func(op, dir string) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s of %s before the rename: %v", op, dir, err)
		}
	})
	ref, err := c.Runc(data, sha256Hex(data))
	if err != nil {
		t.Fatalf("Runc: %v", err)
	}
	defer closeRef(t, ref)
	if len(*calls) != 1 || (*calls)[0] != "fsync "+c.Dir {
		t.Errorf("syncs %q, want an fsync of %s after the rename", *calls, c.Dir)
	}
}

// TestPublishFailsWhenSyncFails checks that a tree whose publish could not
// be made durable is never used, and is cleaned up.
func TestPublishFailsWhenSyncFails(t *testing.T) {
	for _, op := range []string{"syncfs", "fsync"} {
		t.Run(op, func(t *testing.T) {
			c := newCache(t)
			recordSyncs(t, map[string]error{op: syscall.EIO}, func(string, string) {})
			a, _ := memArchive("good", makeTarZst(t, goodArchive()...))
			ref, err := c.Rootfs(a)
			if err == nil {
				ref.Close()
				t.Fatal("Rootfs succeeded although the sync failed")
			}
			var ce *CacheError
			if !errors.As(err, &ce) || !errors.Is(err, syscall.EIO) || strings.Contains(err.Error(), "corrupt") {
				t.Errorf("Rootfs: %v, want a CacheError wrapping EIO that blames no archive", err)
			}
			if names := dirNames(t, filepath.Join(c.Dir, "rootfs")); len(names) != 0 {
				t.Errorf("rootfs dir holds %q, want nothing", names)
			}
			if op == "fsync" {
				data := []byte("runc")
				if ref, err := c.Runc(data, sha256Hex(data)); err == nil {
					ref.Close()
					t.Fatal("Runc succeeded although the sync failed")
				}
				assertNotExist(t, filepath.Join(c.Dir, "runc-"+sha256Hex(data)))
				assertNoTemps(t, c)
			}
		})
	}
}
