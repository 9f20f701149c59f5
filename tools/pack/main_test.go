package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

var fixedTime = time.Unix(0, 0)

// node is one thing in a test tree.
type node struct {
	name  string
	kind  byte // tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo
	body  string
	mode  fs.FileMode
	link  string    // symlink target, or the name a hardlink links to
	mtime time.Time // on disk; zero for "now"
}

// testTree is created in this order; pack must not depend on it.
var testTree = []node{
	{name: "z", kind: tar.TypeDir, mode: 0o755},
	{name: "bin", kind: tar.TypeDir, mode: 0o755},
	{name: "bin/tool", kind: tar.TypeReg, body: "#!/bin/sh\necho tool\n", mode: 0o755, mtime: time.Unix(1_700_000_000, 0)},
	{name: "z/tool-link", kind: tar.TypeLink, link: "bin/tool"},
	{name: "bin/sh", kind: tar.TypeSymlink, link: "tool"},
	{name: "abs", kind: tar.TypeSymlink, link: "/etc/passwd"},
	{name: "a", kind: tar.TypeDir, mode: 0o750, mtime: time.Unix(1_500_000_000, 0)},
	{name: "a/b.txt", kind: tar.TypeReg, body: "bee\n", mode: 0o644, mtime: time.Unix(1_234_567_890, 0)},
	{name: "a/secret", kind: tar.TypeReg, body: "s3cr3t\n", mode: 0o600},
	{name: "a-c", kind: tar.TypeReg, body: "", mode: 0o4755},
	{name: "empty", kind: tar.TypeDir, mode: 0o700},
	{name: "fifo", kind: tar.TypeFifo, mode: 0o644},
}

// wantOrder is the order of the archive's entries: a directory's entries
// sorted by name, each directory followed by its content.
var wantOrder = []string{
	"a/", "a/b.txt", "a/secret",
	"a-c",
	"abs",
	"bin/", "bin/sh", "bin/tool",
	"empty/",
	"z/", "z/tool-link",
}

// makeTree writes testTree under a new temporary directory.
func makeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, n := range testTree {
		p := filepath.Join(root, n.name)
		var err error
		switch n.kind {
		case tar.TypeDir:
			err = os.Mkdir(p, 0o700)
		case tar.TypeReg:
			err = os.WriteFile(p, []byte(n.body), 0o600)
		case tar.TypeSymlink:
			err = os.Symlink(n.link, p)
		case tar.TypeLink:
			err = os.Link(filepath.Join(root, n.link), p)
		case tar.TypeFifo:
			err = syscall.Mkfifo(p, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n.mode != 0 {
			// Chmod, unlike the create calls, ignores the umask.
			if err := os.Chmod(p, n.mode|modeBits(n.mode)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// mtimes last, as creating entries changes their directory's.
	for _, n := range testTree {
		if !n.mtime.IsZero() {
			if err := os.Chtimes(filepath.Join(root, n.name), n.mtime, n.mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// modeBits converts the setuid, setgid and sticky bits of a tar-style mode
// written as a Go constant (0o4755) into os.FileMode bits.
func modeBits(m fs.FileMode) fs.FileMode {
	var b fs.FileMode
	if m&0o4000 != 0 {
		b |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		b |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		b |= fs.ModeSticky
	}
	return b
}

func packBytes(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := pack(&buf, dir, options{Level: 3, ModTime: fixedTime}); err != nil {
		t.Fatalf("pack: %v", err)
	}
	return buf.Bytes()
}

type packedEntry struct {
	hdr  *tar.Header
	body string
}

// readArchive decodes a tar.zst, checking the zstd frame checksum.
func readArchive(t *testing.T, data []byte) []packedEntry {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("zstd: %v", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var entries []packedEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading archive: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", hdr.Name, err)
		}
		entries = append(entries, packedEntry{hdr: hdr, body: string(body)})
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		t.Fatalf("reading to the end of the zstd stream: %v", err)
	}
	return entries
}

// pathLess orders slash-separated names component by component, which is
// the order of a walk that sorts each directory.
func pathLess(a, b string) bool {
	as := strings.Split(strings.TrimSuffix(a, "/"), "/")
	bs := strings.Split(strings.TrimSuffix(b, "/"), "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}

func TestPackIsReproducible(t *testing.T) {
	dir := makeTree(t)
	first := packBytes(t, dir)
	tests := []struct {
		name   string
		change func(t *testing.T)
	}{
		{name: "again", change: func(*testing.T) {}},
		{
			name: "file mtime changed",
			change: func(t *testing.T) {
				mt := time.Unix(1_000_000_000, 0)
				if err := os.Chtimes(filepath.Join(dir, "a/b.txt"), mt, mt); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "directory and symlink mtimes changed",
			change: func(t *testing.T) {
				now := time.Now()
				if err := os.Chtimes(filepath.Join(dir, "a"), now, now); err != nil {
					t.Fatal(err)
				}
				// Touch the symlink itself, not its target.
				ts := unix.NsecToTimespec(now.UnixNano())
				if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, "bin/sh"), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.change(t)
			if got := packBytes(t, dir); !bytes.Equal(got, first) {
				t.Errorf("packing again gave different bytes (%d vs %d bytes)", len(got), len(first))
			}
		})
	}
}

func TestPackContent(t *testing.T) {
	dir := makeTree(t)
	entries := readArchive(t, packBytes(t, dir))

	var names []string
	for _, e := range entries {
		names = append(names, e.hdr.Name)
	}
	if !slices.Equal(names, wantOrder) {
		t.Errorf("entries %q, want %q", names, wantOrder)
	}
	for i := 1; i < len(names); i++ {
		if !pathLess(names[i-1], names[i]) {
			t.Errorf("entry %q comes before %q: not sorted by name", names[i-1], names[i])
		}
	}

	byName := map[string]*tar.Header{}
	for _, e := range entries {
		h := e.hdr
		byName[h.Name] = h
		if !h.ModTime.Equal(fixedTime) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, fixedTime)
		}
		if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: atime %v, ctime %v recorded", h.Name, h.AccessTime, h.ChangeTime)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner names %q:%q, want none", h.Name, h.Uname, h.Gname)
		}
		if h.Uid != os.Getuid() || h.Gid != os.Getgid() {
			t.Errorf("%s: owner %d:%d, want %d:%d", h.Name, h.Uid, h.Gid, os.Getuid(), os.Getgid())
		}
		if len(h.PAXRecords) != 0 {
			t.Errorf("%s: PAX records %v", h.Name, h.PAXRecords)
		}
	}

	// Each node of the tree, as the archive records it.
	for _, n := range testTree {
		name := n.name
		if n.kind == tar.TypeDir {
			name += "/"
		}
		h, ok := byName[name]
		if n.kind == tar.TypeFifo {
			if ok {
				t.Errorf("%s: the FIFO was packed", name)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: missing from the archive", name)
			continue
		}
		if h.Typeflag != n.kind {
			t.Errorf("%s: type %q, want %q", name, h.Typeflag, n.kind)
		}
		if n.mode != 0 && h.Mode != int64(n.mode) {
			t.Errorf("%s: mode %#o, want %#o", name, h.Mode, n.mode)
		}
		if n.link != "" && h.Linkname != n.link {
			t.Errorf("%s: link to %q, want %q", name, h.Linkname, n.link)
		}
	}
	for _, e := range entries {
		var want string
		for _, n := range testTree {
			if n.name == e.hdr.Name && n.kind == tar.TypeReg {
				want = n.body
			}
		}
		if e.hdr.Typeflag == tar.TypeReg && (e.body != want || e.hdr.Size != int64(len(want))) {
			t.Errorf("%s: content %q (size %d), want %q", e.hdr.Name, e.body, e.hdr.Size, want)
		}
	}
	// The second name of the hardlinked file carries no content.
	if h := byName["z/tool-link"]; h != nil && (h.Typeflag != tar.TypeLink || h.Linkname != "bin/tool" || h.Size != 0) {
		t.Errorf("z/tool-link: type %q, link %q, size %d; want a hardlink to bin/tool", h.Typeflag, h.Linkname, h.Size)
	}
}

func TestPackOtherModTime(t *testing.T) {
	dir := makeTree(t)
	mt := time.Unix(1_700_000_000, 0)
	var buf bytes.Buffer
	if err := pack(&buf, dir, options{Level: 3, ModTime: mt}); err != nil {
		t.Fatal(err)
	}
	for _, e := range readArchive(t, buf.Bytes()) {
		if !e.hdr.ModTime.Equal(mt) {
			t.Errorf("%s: mtime %v, want %v", e.hdr.Name, e.hdr.ModTime, mt)
		}
	}
}

func TestPackFile(t *testing.T) {
	dir := makeTree(t)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "rootfs.tar.zst")
	if err := packFile(out, dir, options{Level: 3, ModTime: fixedTime}); err != nil {
		t.Fatalf("packFile: %v", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, packBytes(t, dir)) {
		t.Errorf("%s differs from what pack writes", out)
	}
	sum := sha256.Sum256(data)
	sumLine, err := os.ReadFile(out + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(sum[:]) + "  rootfs.tar.zst\n"; string(sumLine) != want {
		t.Errorf("%s.sha256 = %q, want %q", out, sumLine, want)
	}
	for _, p := range []string{out, out + ".sha256"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != 0o644 {
			t.Errorf("%s: %v, %v; want mode 0644", p, fi.Mode(), err)
		}
	}
	if got := dirNamesOf(t, outDir); !slices.Equal(got, []string{"rootfs.tar.zst", "rootfs.tar.zst.sha256"}) {
		t.Errorf("output dir holds %q", got)
	}

	// Packing again over the old files gives the same files.
	if err := packFile(out, dir, options{Level: 3, ModTime: fixedTime}); err != nil {
		t.Fatalf("packFile again: %v", err)
	}
	again, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Errorf("packing again changed %s", out)
	}
}

func TestPackFileErrors(t *testing.T) {
	tests := []struct {
		name string
		out  func(t *testing.T) string
		dir  func(t *testing.T) string
	}{
		{
			name: "missing tree",
			out:  func(t *testing.T) string { return filepath.Join(t.TempDir(), "out.tar.zst") },
			dir:  func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing") },
		},
		{
			name: "missing output dir",
			out:  func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing", "out.tar.zst") },
			dir:  makeTree,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.out(t)
			err := packFile(out, tc.dir(t), options{Level: 3, ModTime: fixedTime})
			if err == nil {
				t.Fatal("packFile succeeded, want an error")
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s exists after a failed pack (%v)", out, err)
			}
			if _, err := os.Stat(out + ".sha256"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s.sha256 exists after a failed pack (%v)", out, err)
			}
			for _, n := range dirNamesOf(t, filepath.Dir(out)) {
				if strings.HasPrefix(n, ".pack-") {
					t.Errorf("temporary file %s left behind", n)
				}
			}
		})
	}
}

func dirNamesOf(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
