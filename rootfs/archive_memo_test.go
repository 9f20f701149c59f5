package rootfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
)

// countHashes counts the archives hashed until the test ends.
func countHashes(t *testing.T) *atomic.Int32 {
	t.Helper()
	n := new(atomic.Int32)
	orig := hashFile
	hashFile = func(r io.Reader) (string, int64, error) {
		n.Add(1)
		return orig(r)
	}
	t.Cleanup(func() { hashFile = orig })
	return n
}

// hashLater makes every hash begin a minute from now, so that files the
// test just wrote are not racy.
func hashLater(t *testing.T) {
	t.Helper()
	memoClock = func() time.Time { return time.Now().Add(time.Minute) }
	t.Cleanup(func() { memoClock = time.Now })
}

// hostnameTar is a plain tar whose etc/hostname holds name: tars of names
// of one length have one length.
func hostnameTar(t *testing.T, name string) []byte {
	return makeTar(t, tFile("etc/hostname", name+"\n", 0o644))
}

func stat(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// TestArchiveFileMemo opens one archive file again and again, changing it
// in the ways a memo must notice, or lying in its memo.
func TestArchiveFileMemo(t *testing.T) {
	hashes := countHashes(t)
	hashLater(t)
	c := newCache(t)
	p := writeArchiveFile(t, hostnameTar(t, "box"))
	abs, _ := filepath.Abs(p)
	past := time.Now().Add(-time.Hour)

	steps := []struct {
		name          string
		change        func()
		wantHashes    int32
		wantExtracted bool
		wantHostname  string
	}{
		{name: "cold", wantHashes: 1, wantExtracted: true, wantHostname: "box\n"},
		{name: "warm: the memo, no read", wantHashes: 0, wantHostname: "box\n"},
		{
			name:         "touched: hashed again",
			change:       func() { os.Chtimes(p, past, past) },
			wantHashes:   1,
			wantHostname: "box\n",
		},
		{name: "warm after the touch", wantHashes: 0, wantHostname: "box\n"},
		{
			// Same size, same mtime: only ctime tells.
			name: "content replaced, mtime restored",
			change: func() {
				old := stat(t, p)
				for deadline := time.Now().Add(5 * time.Second); ; {
					if err := os.WriteFile(p, hostnameTar(t, "xox"), 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.Chtimes(p, past, past); err != nil {
						t.Fatal(err)
					}
					now := stat(t, p)
					if now.Size != old.Size || now.Mtim != old.Mtim || now.Ino != old.Ino {
						t.Fatalf("replacing the archive changed more than its ctime: %+v, then %+v", old, now)
					}
					// A write in the tick of the last keeps ctime: the
					// racy case, which a real clock covers.
					if now.Ctim != old.Ctim {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("ctime does not change")
					}
					time.Sleep(5 * time.Millisecond)
				}
			},
			wantHashes:    1,
			wantExtracted: true,
			wantHostname:  "xox\n",
		},
		{name: "warm after the replacement", wantHashes: 0, wantHostname: "xox\n"},
		{
			// A memo whose digest's tree is missing: the extraction
			// finds the lie, and Open hashes and extracts again.
			name: "memo names a digest it does not hold",
			change: func() {
				if err := os.WriteFile(p, hostnameTar(t, "boy"), 0o644); err != nil {
					t.Fatal(err)
				}
				// A memo that matches the new content's stat.
				m := stated(abs, stat(t, p))
				m.HashedNs = time.Now().Add(time.Minute).UnixNano()
				m.Digest = sha256Hex([]byte("something else"))
				if err := os.WriteFile(c.memoPath(abs), m.marshal(), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantHashes:    1,
			wantExtracted: true,
			wantHostname:  "boy\n",
		},
		{name: "warm after the lie", wantHashes: 0, wantHostname: "boy\n"},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		hashes.Store(0)
		ref, err := ArchiveFile(p).Open(c)
		if err != nil {
			t.Fatalf("%s: Open: %v", s.name, err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := hashes.Load(); got != s.wantHashes {
			t.Errorf("%s: hashed %d times, want %d", s.name, got, s.wantHashes)
		}
		if ref.Extracted != s.wantExtracted || ref.Digest != sha256Hex(data) {
			t.Errorf("%s: Ref{Extracted %t, Digest %s}, want {%t, %s}", s.name, ref.Extracted, short(ref.Digest), s.wantExtracted, short(sha256Hex(data)))
		}
		if got := readFile(t, filepath.Join(ref.Path, "etc/hostname")); got != s.wantHostname {
			t.Errorf("%s: etc/hostname = %q, want %q", s.name, got, s.wantHostname)
		}
		if m, ok := readMemo(c.memoPath(abs)); !ok || m.Digest != sha256Hex(data) {
			t.Errorf("%s: memo %+v (%t), want one with digest %s", s.name, m, ok, short(sha256Hex(data)))
		}
		closeRef(t, ref)
	}
	assertNoTemps(t, c)
	if names := dirNames(t, filepath.Join(c.Dir, "archives")); len(names) != 1 {
		t.Errorf("archives/ holds %q, want one memo", names)
	}
}

// TestArchiveFileRacy: a file changed just before it was hashed (with the
// real clock) gets no memo, and is hashed at every start until it is old
// enough.
func TestArchiveFileRacy(t *testing.T) {
	hashes := countHashes(t)
	c := newCache(t)
	p := writeArchiveFile(t, hostnameTar(t, "box"))
	for i := range 2 {
		ref, err := ArchiveFile(p).Open(c)
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		closeRef(t, ref)
	}
	if got := hashes.Load(); got != 2 {
		t.Errorf("hashed %d times, want 2: a racy file must not be memoized", got)
	}
	abs, _ := filepath.Abs(p)
	assertNotExist(t, c.memoPath(abs))
}

// TestArchiveFileReadOnlyCache: a cache this process cannot write into
// hashes the archive, ignoring the memo it holds, and serves its tree.
func TestArchiveFileReadOnlyCache(t *testing.T) {
	if !inNamespace(t) {
		return
	}
	hashLater(t)
	fsDir := mountTmpfs(t, 16<<20)
	c := &Cache{Dir: filepath.Join(fsDir, "cache"), Log: logr.Discard(), DropSetID: true}
	p := writeArchiveFile(t, hostnameTar(t, "box"))
	other := writeArchiveFile(t, hostnameTar(t, "xox"))
	ref, err := ArchiveFile(p).Open(c)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	closeRef(t, ref)
	abs, _ := filepath.Abs(p)
	if _, ok := readMemo(c.memoPath(abs)); !ok {
		t.Fatal("no memo written into a writable cache")
	}
	if err := unix.Mount("", fsDir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remounting read-only: %v", err)
	}
	hashes := countHashes(t)
	ref, err = ArchiveFile(p).Open(c)
	if err != nil {
		t.Fatalf("warm Open in a read-only cache: %v", err)
	}
	if ref.Extracted || readFile(t, filepath.Join(ref.Path, "etc/hostname")) != "box\n" {
		t.Errorf("warm Open in a read-only cache: Extracted %t", ref.Extracted)
	}
	closeRef(t, ref)
	if got := hashes.Load(); got != 1 {
		t.Errorf("hashed %d times in a read-only cache, want 1", got)
	}
	_, err = ArchiveFile(other).Open(c)
	var ce *CacheError
	if !errors.As(err, &ce) || !errors.Is(err, syscall.EROFS) || ce.Remedy != FillOnce {
		t.Errorf("cold Open in a read-only cache: %v, want a CacheError wrapping EROFS, Remedy FillOnce", err)
	}
}

// TestPruneArchiveMemos: Prune removes the memos of archives gone, and
// what in archives/ is no memo, and keeps the others.
func TestPruneArchiveMemos(t *testing.T) {
	hashLater(t)
	c := newCache(t)
	kept := writeArchiveFile(t, hostnameTar(t, "box"))
	gone := writeArchiveFile(t, hostnameTar(t, "xox"))
	for _, p := range []string{kept, gone} {
		ref, err := ArchiveFile(p).Open(c)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		closeRef(t, ref)
	}
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(c.Dir, "archives", "junk")
	if err := os.WriteFile(junk, []byte("not a memo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Prune(); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	keptAbs, _ := filepath.Abs(kept)
	goneAbs, _ := filepath.Abs(gone)
	if _, ok := readMemo(c.memoPath(keptAbs)); !ok {
		t.Errorf("the memo of %s, which exists, was pruned", kept)
	}
	assertNotExist(t, c.memoPath(goneAbs))
	assertNotExist(t, junk)
}

// TestParseMemo: a memo torn or tampered with is none.
func TestParseMemo(t *testing.T) {
	m := archiveMemo{Path: "/a b\n", Dev: 1, Ino: 2, Size: 3, MtimeNs: 4, CtimeNs: 5, HashedNs: 6, Digest: sha256Hex(nil)}
	b := m.marshal()
	if got, ok := parseMemo(b); !ok || *got != m {
		t.Fatalf("parseMemo(marshal(%+v)) = %+v, %t", m, got, ok)
	}
	for _, tc := range []struct {
		name string
		b    string
	}{
		{"empty", ""},
		{"torn", string(b[:len(b)-20])},
		{"no digest", string(b[:len(b)-len("digest ")-65])},
		{"other magic", "mrtd-archive-memo 2" + string(b[len(memoMagic):])},
		{"repeated field", string(b) + "size 3\n"},
		{"short digest", string(b[:len(b)-3]) + "\n"},
	} {
		if got, ok := parseMemo([]byte(tc.b)); ok {
			t.Errorf("%s: parseMemo = %+v, want none", tc.name, got)
		}
	}
}

// BenchmarkArchiveOpenWarm opens the built rootfs archive (about 28 MB)
// from a warm cache: as before memos (hashing it), and with its memo.
func BenchmarkArchiveOpenWarm(b *testing.B) {
	p, err := filepath.Abs("../build/rootfs.tar.zst")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		b.Skipf("no built archive: %v", err)
	}
	c := &Cache{Dir: b.TempDir(), Log: logr.Discard(), DropSetID: true}
	ref, err := ArchiveFile(p).Open(c)
	if err != nil {
		b.Fatal(err)
	}
	ref.Close()
	b.Run("hash", func(b *testing.B) {
		for b.Loop() {
			a, err := FileArchive(p)
			if err != nil {
				b.Fatal(err)
			}
			ref, err := c.Rootfs(a)
			if err != nil || ref.Extracted {
				b.Fatal(err)
			}
			ref.Close()
		}
	})
	b.Run("memo", func(b *testing.B) {
		for b.Loop() {
			ref, err := ArchiveFile(p).Open(c)
			if err != nil || ref.Extracted {
				b.Fatal(err)
			}
			ref.Close()
		}
	})
}
