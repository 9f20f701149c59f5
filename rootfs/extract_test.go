package rootfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// testModTime is the mtime given to archive entries that do not set one.
var testModTime = time.Unix(1_600_000_000, 0)

// tEntry is one archive entry to write: a header and, for regular files, a
// body.
type tEntry struct {
	hdr  tar.Header
	body string
}

func tDir(name string, mode int64) tEntry {
	return tEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

func tFile(name, body string, mode int64) tEntry {
	return tEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body))}, body: body}
}

func tSymlink(name, target string) tEntry {
	return tEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func tHardlink(name, target string) tEntry {
	return tEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

func tSpecial(name string, typ byte) tEntry {
	return tEntry{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o666, Devmajor: 1, Devminor: 3}}
}

// withModTime returns e with its mtime set to mt.
func (e tEntry) withModTime(mt time.Time) tEntry {
	e.hdr.ModTime = mt
	return e
}

// makeTar writes entries as an uncompressed tar.
func makeTar(t *testing.T, entries ...tEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.ModTime.IsZero() {
			hdr.ModTime = testModTime
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("writing tar header %q: %v", hdr.Name, err)
		}
		if e.body != "" {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatalf("writing tar body %q: %v", hdr.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("closing tar writer: %v", err)
	}
	return buf.Bytes()
}

// zstdCompress compresses data as one zstd frame with a checksum.
func zstdCompress(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatalf("zstd writer: %v", err)
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatalf("zstd write: %v", err)
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("zstd close: %v", err)
	}
	return buf.Bytes()
}

// makeTarZst writes entries as a zstd-compressed tar.
func makeTarZst(t *testing.T, entries ...tEntry) []byte {
	t.Helper()
	return zstdCompress(t, makeTar(t, entries...))
}

// makeRemovable makes every directory under dir writable again when the test
// ends, so that t.TempDir's cleanup can remove read-only trees when the tests
// do not run as root. Register it after the t.TempDir call it is for: cleanups
// run last-registered first.
func makeRemovable(t *testing.T, dir string) {
	t.Helper()
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
	})
}

// dirNames lists the names in dir, sorted; a missing dir lists as empty.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func assertNotExist(t *testing.T, p string) {
	t.Helper()
	// ENOTDIR: a parent is a file, so p cannot exist either.
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("%s exists (Lstat err %v); it must not", p, err)
	}
}

func lstat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return fi
}

func nlink(t *testing.T, p string) uint64 {
	t.Helper()
	st, ok := lstat(t, p).Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("%s: no stat_t", p)
	}
	return uint64(st.Nlink)
}

func TestExtractRejectsUnsafeEntries(t *testing.T) {
	// Each case runs in a fresh layout:
	//
	//	base/root/             the extraction target
	//	base/outside/secret    what the attacks aim at
	//
	// aim names the path (relative to base, or absolute) the attack tries to
	// create; it must not exist afterwards.
	const secret = "do not touch\n"
	tests := []struct {
		name string
		// entries builds the archive; outside is the absolute path of
		// base/outside.
		entries func(outside string) []tEntry
		// wantEntry is the entry the error must name.
		wantEntry string
		// aim lists paths, relative to base, that must not exist.
		aim []string
		// aimAbs lists absolute paths (given outside) that must not exist.
		aimAbs func(outside string) []string
	}{
		{
			name:      "dot-dot",
			entries:   func(string) []tEntry { return []tEntry{tFile("../evil", "pwned", 0o644)} },
			wantEntry: "../evil",
			aim:       []string{"evil"},
		},
		{
			name: "dot-dot inside the path",
			entries: func(string) []tEntry {
				return []tEntry{tDir("a/", 0o755), tFile("a/../../evil", "pwned", 0o644)}
			},
			wantEntry: "a/../../evil",
			aim:       []string{"evil"},
		},
		{
			name: "dot-dot that cleans to inside",
			entries: func(string) []tEntry {
				return []tEntry{tDir("a/", 0o755), tFile("a/../evil", "pwned", 0o644)}
			},
			wantEntry: "a/../evil",
			aim:       []string{"root/evil"},
		},
		{
			name: "absolute path",
			entries: func(outside string) []tEntry {
				return []tEntry{tFile(filepath.Join(outside, "evil"), "pwned", 0o644)}
			},
			aimAbs: func(outside string) []string { return []string{filepath.Join(outside, "evil")} },
		},
		{
			name: "absolute directory",
			entries: func(outside string) []tEntry {
				return []tEntry{tDir(filepath.Join(outside, "evildir")+"/", 0o755)}
			},
			aimAbs: func(outside string) []string { return []string{filepath.Join(outside, "evildir")} },
		},
		{
			name: "write through absolute symlink",
			entries: func(outside string) []tEntry {
				return []tEntry{tSymlink("link", outside), tFile("link/evil", "pwned", 0o644)}
			},
			wantEntry: "link/evil",
			aim:       []string{"outside/evil"},
		},
		{
			name: "write through relative symlink to parent",
			entries: func(string) []tEntry {
				return []tEntry{tSymlink("link", ".."), tFile("link/evil", "pwned", 0o644)}
			},
			wantEntry: "link/evil",
			aim:       []string{"evil"},
		},
		{
			name: "write through symlink deeper",
			entries: func(outside string) []tEntry {
				return []tEntry{tDir("a/", 0o755), tSymlink("a/link", outside), tFile("a/link/sub/evil", "pwned", 0o644)}
			},
			wantEntry: "a/link/sub/evil",
			aim:       []string{"outside/sub"},
		},
		{
			name: "directory through symlink",
			entries: func(outside string) []tEntry {
				return []tEntry{tSymlink("link", outside), tDir("link/evildir/", 0o755)}
			},
			wantEntry: "link/evildir/",
			aim:       []string{"outside/evildir"},
		},
		{
			name: "symlink through symlink",
			entries: func(outside string) []tEntry {
				return []tEntry{tSymlink("link", outside), tSymlink("link/evil", "/etc/passwd")}
			},
			wantEntry: "link/evil",
			aim:       []string{"outside/evil"},
		},
		{
			name: "hardlink through symlink",
			entries: func(outside string) []tEntry {
				return []tEntry{tFile("f", "data", 0o644), tSymlink("link", outside), tHardlink("link/evil", "f")}
			},
			wantEntry: "link/evil",
			aim:       []string{"outside/evil"},
		},
		{
			name:      "hardlink to dot-dot",
			entries:   func(string) []tEntry { return []tEntry{tHardlink("h", "../outside/secret")} },
			wantEntry: "h",
			aim:       []string{"root/h"},
		},
		{
			name:      "hardlink to /etc/passwd",
			entries:   func(string) []tEntry { return []tEntry{tHardlink("h", "/etc/passwd")} },
			wantEntry: "h",
			aim:       []string{"root/h"},
		},
		{
			name: "hardlink to absolute sibling",
			entries: func(outside string) []tEntry {
				return []tEntry{tHardlink("h", filepath.Join(outside, "secret"))}
			},
			wantEntry: "h",
			aim:       []string{"root/h"},
		},
		{
			name: "hardlink to symlink entry",
			entries: func(outside string) []tEntry {
				return []tEntry{tSymlink("s", filepath.Join(outside, "secret")), tHardlink("h", "s")}
			},
			wantEntry: "h",
			aim:       []string{"root/h"},
		},
		{
			name: "hardlink to directory",
			entries: func(string) []tEntry {
				return []tEntry{tDir("d/", 0o755), tHardlink("h", "d")}
			},
			wantEntry: "h",
			aim:       []string{"root/h"},
		},
		{
			name:      "hardlink to a later entry",
			entries:   func(string) []tEntry { return []tEntry{tHardlink("h", "f"), tFile("f", "data", 0o644)} },
			wantEntry: "h",
			aim:       []string{"root/h", "root/f"},
		},
		{
			name: "directory replaces file",
			entries: func(string) []tEntry {
				return []tEntry{tFile("f", "data", 0o644), tDir("f/", 0o755), tFile("f/evil", "pwned", 0o644)}
			},
			wantEntry: "f/",
			aim:       []string{"root/f/evil"},
		},
		{
			name: "directory replaces symlink",
			entries: func(outside string) []tEntry {
				return []tEntry{tSymlink("s", outside), tDir("s/", 0o755), tFile("s/evil", "pwned", 0o644)}
			},
			wantEntry: "s/",
			aim:       []string{"outside/evil"},
		},
		{
			name: "file replaces directory",
			entries: func(string) []tEntry {
				return []tEntry{tDir("d/", 0o755), tFile("d/keep", "data", 0o644), tFile("d", "pwned", 0o644)}
			},
			wantEntry: "d",
		},
		{
			name: "symlink replaces directory",
			entries: func(outside string) []tEntry {
				return []tEntry{tDir("d/", 0o755), tSymlink("d", outside), tFile("d/evil", "pwned", 0o644)}
			},
			wantEntry: "d",
			aim:       []string{"outside/evil"},
		},
		{
			name:      "file names the root",
			entries:   func(string) []tEntry { return []tEntry{tFile(".", "pwned", 0o644)} },
			wantEntry: ".",
		},
		{
			name:      "symlink without target",
			entries:   func(string) []tEntry { return []tEntry{tSymlink("s", "")} },
			wantEntry: "s",
		},
	}
	for _, tc := range tests {
		for _, compressed := range []bool{false, true} {
			variant := "tar"
			if compressed {
				variant = "zst"
			}
			t.Run(tc.name+"/"+variant, func(t *testing.T) {
				base := t.TempDir()
				root := filepath.Join(base, "root")
				outside := filepath.Join(base, "outside")
				for _, d := range []string{root, outside} {
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				makeRemovable(t, base)
				if err := os.WriteFile(filepath.Join(outside, "secret"), []byte(secret), 0o644); err != nil {
					t.Fatal(err)
				}
				entries := tc.entries(outside)
				wantEntry := tc.wantEntry
				if wantEntry == "" {
					wantEntry = entries[len(entries)-1].hdr.Name
				}
				data := makeTar(t, entries...)
				if compressed {
					data = zstdCompress(t, data)
				}

				_, err := extract(bytes.NewReader(data), root, extractOptions{DropSetID: true})

				var ue *UnsafeEntryError
				if !errors.As(err, &ue) {
					t.Fatalf("extract: got error %v (%T), want *UnsafeEntryError", err, err)
				}
				if ue.Entry != wantEntry {
					t.Errorf("UnsafeEntryError.Entry = %q, want %q", ue.Entry, wantEntry)
				}
				if msg := err.Error(); !strings.Contains(msg, wantEntry) {
					t.Errorf("error %q does not name the entry %q", msg, wantEntry)
				}

				// Nothing was written beside the target.
				if got, want := dirNames(t, base), []string{"outside", "root"}; !slices.Equal(got, want) {
					t.Errorf("base holds %q, want %q", got, want)
				}
				if got, want := dirNames(t, outside), []string{"secret"}; !slices.Equal(got, want) {
					t.Errorf("outside holds %q, want %q", got, want)
				}
				if b, err := os.ReadFile(filepath.Join(outside, "secret")); err != nil || string(b) != secret {
					t.Errorf("outside/secret = %q, %v; want it unchanged", b, err)
				}
				if n := nlink(t, filepath.Join(outside, "secret")); n != 1 {
					t.Errorf("outside/secret has %d links, want 1", n)
				}
				for _, p := range tc.aim {
					assertNotExist(t, filepath.Join(base, p))
				}
				if tc.aimAbs != nil {
					for _, p := range tc.aimAbs(outside) {
						assertNotExist(t, p)
					}
				}
			})
		}
	}
}

// goodArchive returns the entries of a well-formed rootfs archive, without
// mount points.
func goodArchive() []tEntry {
	return []tEntry{
		tDir("bin/", 0o755),
		tFile("bin/tool", "#!/bin/sh\necho tool\n", 0o755),
		tFile("bin/su", "setuid binary", 0o4755),
		tSymlink("bin/sh", "/bin/busybox"),
		tHardlink("bin/tool2", "bin/tool"),
		tDir("etc/", 0o755).withModTime(time.Unix(1_500_000_000, 0)),
		tFile("etc/hostname", "box\n", 0o644).withModTime(time.Unix(1_234_567_890, 0)),
		tFile("etc/shadow", "root:*:1::::::\n", 0o600),
		tSymlink("etc/tool", "../bin/tool"),
		tDir("ro/", 0o555).withModTime(time.Unix(1_400_000_000, 0)),
		tFile("ro/file", "inside a read-only dir\n", 0o644),
		tDir("ro/sub/", 0o555),
		tFile("ro/sub/deeper", "deeper\n", 0o444),
		// No headers for usr/ and usr/lib/.
		tFile("usr/lib/libx.so", "ELF", 0o644),
		tFile("empty", "", 0o644),
		tSpecial("null", tar.TypeChar),
		tSpecial("loop0", tar.TypeBlock),
		tSpecial("fifo", tar.TypeFifo),
		// A later entry replaces an earlier one, as tar does.
		tFile("etc/motd", "old\n", 0o644),
		tFile("etc/motd", "new\n", 0o644),
	}
}

func TestExtractGoodArchive(t *testing.T) {
	tests := []struct {
		name       string
		dropSetID  bool
		compressed bool
	}{
		{name: "zst drop setid", dropSetID: true, compressed: true},
		{name: "zst keep setid", dropSetID: false, compressed: true},
		{name: "plain tar", dropSetID: true, compressed: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			makeRemovable(t, root)
			data := makeTar(t, goodArchive()...)
			if tc.compressed {
				data = zstdCompress(t, data)
			}
			stats, err := extract(bytes.NewReader(data), root, extractOptions{DropSetID: tc.dropSetID})
			if err != nil {
				t.Fatalf("extract: %v", err)
			}

			// Counts: 10 regular file entries (etc/motd twice), 1 hardlink,
			// 2 symlinks, 3 skipped special files.
			if stats.Files != 10 || stats.Hardlinks != 1 || stats.Symlinks != 2 || stats.Skipped != 3 {
				t.Errorf("stats = %+v, want Files 10, Hardlinks 1, Symlinks 2, Skipped 3", stats)
			}

			// Contents and modes.
			files := []struct {
				name string
				body string
				mode fs.FileMode
			}{
				{"bin/tool", "#!/bin/sh\necho tool\n", 0o755},
				{"etc/hostname", "box\n", 0o644},
				{"etc/shadow", "root:*:1::::::\n", 0o600},
				{"ro/file", "inside a read-only dir\n", 0o644},
				{"ro/sub/deeper", "deeper\n", 0o444},
				{"usr/lib/libx.so", "ELF", 0o644},
				{"empty", "", 0o644},
				{"etc/motd", "new\n", 0o644},
			}
			for _, f := range files {
				p := filepath.Join(root, f.name)
				fi := lstat(t, p)
				if !fi.Mode().IsRegular() {
					t.Errorf("%s: mode %v, want a regular file", f.name, fi.Mode())
					continue
				}
				if fi.Mode() != f.mode {
					t.Errorf("%s: mode %v, want %v", f.name, fi.Mode(), f.mode)
				}
				if b, err := os.ReadFile(p); err != nil || string(b) != f.body {
					t.Errorf("%s: content %q, %v; want %q", f.name, b, err, f.body)
				}
			}

			// Directories, including implicit ones and the read-only ones.
			dirs := map[string]fs.FileMode{
				".":       0o755,
				"bin":     0o755,
				"etc":     0o755,
				"ro":      0o555,
				"ro/sub":  0o555,
				"usr":     0o755,
				"usr/lib": 0o755,
			}
			for name, mode := range dirs {
				fi := lstat(t, filepath.Join(root, name))
				if want := fs.ModeDir | mode; fi.Mode() != want {
					t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
				}
			}

			// Mount points, absent from the archive.
			for _, mp := range MountPoints {
				fi := lstat(t, filepath.Join(root, mp))
				want := fs.ModeDir | 0o755
				if mp == "tmp" {
					want = fs.ModeDir | fs.ModeSticky | 0o777
				}
				if fi.Mode() != want {
					t.Errorf("mount point %s: mode %v, want %v", mp, fi.Mode(), want)
				}
			}

			// Symlinks are kept as they are, absolute targets included.
			for name, target := range map[string]string{"bin/sh": "/bin/busybox", "etc/tool": "../bin/tool"} {
				p := filepath.Join(root, name)
				if fi := lstat(t, p); fi.Mode()&fs.ModeSymlink == 0 {
					t.Errorf("%s: mode %v, want a symlink", name, fi.Mode())
					continue
				}
				if got, err := os.Readlink(p); err != nil || got != target {
					t.Errorf("%s -> %q, %v; want %q", name, got, err, target)
				}
			}

			// The hardlink shares its target's inode.
			if !os.SameFile(lstat(t, filepath.Join(root, "bin/tool")), lstat(t, filepath.Join(root, "bin/tool2"))) {
				t.Errorf("bin/tool2 is not the same file as bin/tool")
			}

			// Special files are skipped.
			for _, name := range []string{"null", "loop0", "fifo"} {
				assertNotExist(t, filepath.Join(root, name))
			}

			// setuid.
			su := lstat(t, filepath.Join(root, "bin/su"))
			if su.Mode().Perm() != 0o755 {
				t.Errorf("bin/su: permissions %v, want 0755", su.Mode().Perm())
			}
			if tc.dropSetID {
				if su.Mode()&fs.ModeSetuid != 0 {
					t.Errorf("bin/su: mode %v has setuid with DropSetID", su.Mode())
				}
			} else if su.Mode()&fs.ModeSetuid == 0 {
				// The owner of a file may set its setuid bit, root or not.
				t.Errorf("bin/su: mode %v lacks setuid without DropSetID", su.Mode())
			}

			// mtimes, of a file, a directory, a read-only directory whose
			// content was written after its header, a symlink and a default.
			mtimes := map[string]time.Time{
				"etc/hostname": time.Unix(1_234_567_890, 0),
				"etc":          time.Unix(1_500_000_000, 0),
				"ro":           time.Unix(1_400_000_000, 0),
				"bin/sh":       testModTime,
				"bin/tool":     testModTime,
			}
			for name, want := range mtimes {
				if got := lstat(t, filepath.Join(root, name)).ModTime(); !got.Equal(want) {
					t.Errorf("%s: mtime %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestExtractOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another uid needs root")
	}
	owner := Owner{UID: 54321, GID: 54322}
	root := t.TempDir()
	data := makeTarZst(t, goodArchive()...)
	if _, err := extract(bytes.NewReader(data), root, extractOptions{Owner: &owner, DropSetID: true}); err != nil {
		t.Fatalf("extract: %v", err)
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st := lstat(t, p).Sys().(*syscall.Stat_t)
		if int(st.Uid) != owner.UID || int(st.Gid) != owner.GID {
			t.Errorf("%s: owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, owner.UID, owner.GID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestExtractMountPointNotADirectory(t *testing.T) {
	tests := []struct {
		name    string
		entries []tEntry
	}{
		{name: "proc is a file", entries: []tEntry{tFile("proc", "not a dir", 0o644)}},
		{name: "tmp is a symlink", entries: []tEntry{tSymlink("tmp", "/var/tmp")}},
		{name: "dev is a hardlink", entries: []tEntry{tFile("f", "x", 0o644), tHardlink("dev", "f")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := extract(bytes.NewReader(makeTarZst(t, tc.entries...)), t.TempDir(), extractOptions{})
			if err == nil {
				t.Fatal("extract succeeded, want an error")
			}
		})
	}
}

func TestExtractKeepsArchiveMountPoints(t *testing.T) {
	root := t.TempDir()
	data := makeTarZst(t, tDir("tmp/", 0o1777), tDir("run/", 0o700), tFile("proc/stale", "x", 0o644))
	if _, err := extract(bytes.NewReader(data), root, extractOptions{}); err != nil {
		t.Fatalf("extract: %v", err)
	}
	want := map[string]fs.FileMode{
		"tmp":  fs.ModeDir | fs.ModeSticky | 0o777,
		"run":  fs.ModeDir | 0o700,
		"proc": fs.ModeDir | 0o755,
		"sys":  fs.ModeDir | 0o755,
		"dev":  fs.ModeDir | 0o755,
	}
	for name, mode := range want {
		if got := lstat(t, filepath.Join(root, name)).Mode(); got != mode {
			t.Errorf("%s: mode %v, want %v", name, got, mode)
		}
	}
}

func TestExtractBadInput(t *testing.T) {
	good := makeTarZst(t, goodArchive()...)
	corruptChecksum := bytes.Clone(good)
	corruptChecksum[len(corruptChecksum)-1] ^= 0xff
	bigTar := makeTar(t, tFile("big", strings.Repeat("x", 8192), 0o644), tFile("next", "x", 0o644))
	garbage := bytes.Repeat([]byte("this is not an archive\n"), 100)

	tests := []struct {
		name    string
		data    []byte
		notArch bool // the error must be ErrNotArchive
	}{
		{name: "truncated zstd", data: good[:len(good)/2]},
		{name: "zstd magic only", data: good[:4]},
		{name: "zstd checksum mismatch", data: corruptChecksum},
		// archive/tar takes a plain tar cut at an entry boundary, or
		// inside the padding after a file, for a complete one; cut inside
		// a body and inside a header. TestRootfsTruncatedPlainTar shows
		// the cache catching the other cuts by digest.
		{name: "tar cut inside a body", data: bigTar[:512+3000]},
		{name: "tar cut inside a header", data: bigTar[:512+8192+100]},
		{name: "garbage", data: garbage, notArch: true},
		{name: "short garbage", data: []byte("hello"), notArch: true},
		{name: "empty", data: nil, notArch: true},
		{name: "zstd of garbage", data: zstdCompress(t, garbage)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			makeRemovable(t, root)
			_, err := extract(bytes.NewReader(tc.data), root, extractOptions{})
			if err == nil {
				t.Fatal("extract succeeded, want an error")
			}
			if got := errors.Is(err, ErrNotArchive); got != tc.notArch {
				t.Errorf("errors.Is(%v, ErrNotArchive) = %v, want %v", err, got, tc.notArch)
			}
		})
	}
}

func TestExtractEmptyTar(t *testing.T) {
	root := t.TempDir()
	if _, err := extract(bytes.NewReader(makeTar(t)), root, extractOptions{}); err != nil {
		t.Fatalf("extract of an empty tar: %v", err)
	}
	if got := dirNames(t, root); !slices.Equal(got, []string{"dev", "proc", "run", "sys", "tmp"}) {
		t.Errorf("root holds %q, want only the mount points", got)
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "a", want: "a"},
		{in: "a/b/", want: "a/b"},
		{in: "./a//b/./c", want: "a/b/c"},
		{in: ".", want: ""},
		{in: "./", want: ""},
		{in: "a..b", want: "a..b"},
		{in: "..a/b..", want: "..a/b.."},
		{in: "", wantErr: true},
		{in: "..", wantErr: true},
		{in: "../a", wantErr: true},
		{in: "a/..", wantErr: true},
		{in: "a/../b", wantErr: true},
		{in: "/a", wantErr: true},
		{in: "//a", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := cleanName(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("cleanName(%q) error %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Errorf("cleanName(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
