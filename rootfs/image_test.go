package rootfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// memLayer returns a Layer of the tar of entries, with its real DiffID,
// and a counter of its Open calls.
func memLayer(t *testing.T, entries ...tEntry) (Layer, *atomic.Int32) {
	t.Helper()
	return rawLayer(makeTar(t, entries...))
}

func rawLayer(data []byte) (Layer, *atomic.Int32) {
	opens := new(atomic.Int32)
	return Layer{
		DiffID: "sha256:" + sha256Hex(data),
		Open: func() (io.ReadCloser, error) {
			opens.Add(1)
			return io.NopCloser(bytes.NewReader(data)), nil
		},
	}, opens
}

// imageOf returns an image of layers, bottom first, each a list of entries.
// Its digest is made up from the layers' DiffIDs, as a manifest's would be.
func imageOf(t *testing.T, name string, layers ...[]tEntry) ImageTree {
	t.Helper()
	img := ImageTree{Name: name}
	for _, entries := range layers {
		l, _ := memLayer(t, entries...)
		img.Layers = append(img.Layers, l)
	}
	return withDigest(img)
}

// withDigest gives img the digest a manifest of its layers would have.
func withDigest(img ImageTree) ImageTree {
	var m strings.Builder
	m.WriteString(img.Name)
	for _, l := range img.Layers {
		m.WriteString(l.DiffID)
	}
	img.Digest = "sha256:" + sha256Hex([]byte(m.String()))
	return img
}

// flatten calls c.Image and fails the test on an error.
func flatten(t *testing.T, c *Cache, img ImageTree) *Ref {
	t.Helper()
	ref, err := c.Image(img)
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	t.Cleanup(func() { ref.Close() })
	return ref
}

// assertNothingCached fails unless the cache's rootfs/ holds no tree, no
// temporary tree and no lock file.
func assertNothingCached(t *testing.T, c *Cache) {
	t.Helper()
	if got := dirNames(t, filepath.Join(c.Dir, "rootfs")); len(got) != 0 {
		t.Errorf("rootfs dir holds %q after a failed Image, want nothing", got)
	}
}

// want describes a path in a flattened tree: "dir", "file:CONTENT",
// "link:TARGET" or "absent".
func assertTree(t *testing.T, root string, want map[string]string) {
	t.Helper()
	for name, w := range want {
		p := filepath.Join(root, name)
		kind, arg, _ := strings.Cut(w, ":")
		if kind == "absent" {
			assertNotExist(t, p)
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v, want %s", name, err, w)
			continue
		}
		switch kind {
		case "dir":
			if !fi.IsDir() {
				t.Errorf("%s: mode %v, want a directory", name, fi.Mode())
			}
		case "file":
			if !fi.Mode().IsRegular() {
				t.Errorf("%s: mode %v, want a regular file", name, fi.Mode())
			} else if got := readFile(t, p); got != arg {
				t.Errorf("%s = %q, want %q", name, got, arg)
			}
		case "link":
			if got, err := os.Readlink(p); err != nil || got != arg {
				t.Errorf("%s: symlink to %q (%v), want to %q", name, got, err, arg)
			}
		default:
			t.Fatalf("bad want %q", w)
		}
	}
}

func tWhiteout(dir, name string) tEntry {
	return tFile(filepath.Join(dir, ".wh."+name), "", 0o644)
}

func tOpaque(dir string) tEntry {
	return tFile(filepath.Join(dir, ".wh..wh..opq"), "", 0o644)
}

func TestImageLayers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		layers [][]tEntry
		want   map[string]string
		// nlinks are expected link counts.
		nlinks map[string]uint64
		modes  map[string]fs.FileMode
	}{
		{
			name: "whiteouts across layers",
			layers: [][]tEntry{
				{tDir("etc/", 0o755), tFile("etc/a", "a", 0o644), tFile("etc/b", "b", 0o644),
					tDir("usr/", 0o755), tFile("usr/bin/x", "x", 0o755), tFile("usr/lib/y", "y", 0o644)},
				{tWhiteout("etc", "a"), tWhiteout("", "usr"), tFile("etc/c", "c", 0o644)},
				{tFile("usr/new", "new", 0o644), tWhiteout("etc", "c"), tWhiteout("etc", "never-was")},
			},
			want: map[string]string{
				"etc/a": "absent", "etc/b": "file:b", "etc/c": "absent",
				"usr/new": "file:new", "usr/bin": "absent", "usr/lib": "absent",
			},
		},
		{
			name: "a whiteout never hides its own layer's entry",
			layers: [][]tEntry{
				{tFile("f", "old", 0o644), tFile("g", "old", 0o644), tFile("d/old", "old", 0o644), tFile("e/old", "old", 0o644)},
				{
					// Whiteout first, entry after, and the other way round.
					tWhiteout("", "f"), tFile("f", "new", 0o644),
					tFile("g", "new", 0o644), tWhiteout("", "g"),
					// Own entries under a whited-out directory, before and
					// after the whiteout.
					tFile("d/new", "new", 0o644), tWhiteout("", "d"),
					tWhiteout("", "e"), tFile("e/new", "new", 0o644),
				},
			},
			want: map[string]string{
				"f": "file:new", "g": "file:new",
				"d/new": "file:new", "d/old": "absent",
				"e/new": "file:new", "e/old": "absent",
			},
		},
		{
			name: "a directory whited out and declared again in the same layer loses the lower entries",
			layers: [][]tEntry{
				{tFile("d/old", "old", 0o644), tFile("e/old", "old", 0o644)},
				{tWhiteout("", "d"), tDir("d/", 0o755), tDir("e/", 0o755), tWhiteout("", "e")},
			},
			want: map[string]string{"d": "dir", "d/old": "absent", "e": "dir", "e/old": "absent"},
		},
		{
			name: "opaque marker before its siblings",
			layers: [][]tEntry{
				{tFile("d/old", "old", 0o644), tFile("d/sub/deep", "deep", 0o644), tFile("other/keep", "keep", 0o644)},
				{tDir("d/", 0o755), tOpaque("d"), tFile("d/new", "new", 0o644), tFile("d/sub/own", "own", 0o644)},
			},
			want: map[string]string{
				"d/old": "absent", "d/sub/deep": "absent", "d/new": "file:new", "d/sub/own": "file:own",
				"d/.wh..wh..opq": "absent", "other/keep": "file:keep",
			},
		},
		{
			name: "opaque marker after its siblings",
			layers: [][]tEntry{
				{tFile("d/old", "old", 0o644), tFile("d/sub/deep", "deep", 0o644), tFile("d/gone/deep", "deep", 0o644), tFile("other/keep", "keep", 0o644)},
				{tDir("d/", 0o755), tFile("d/new", "new", 0o644), tDir("d/sub/", 0o755), tFile("d/sub/own", "own", 0o644), tOpaque("d")},
			},
			want: map[string]string{
				"d/old": "absent", "d/sub/deep": "absent", "d/gone": "absent",
				"d/new": "file:new", "d/sub/own": "file:own",
				"d/.wh..wh..opq": "absent", "other/keep": "file:keep",
			},
		},
		{
			name: "opaque marker without its directory entry, then upper layers",
			layers: [][]tEntry{
				{tFile("d/old", "old", 0o644)},
				{tOpaque("d"), tFile("d/two", "two", 0o644)},
				{tFile("d/three", "three", 0o644)},
				{tOpaque("e")},
			},
			want: map[string]string{"d/old": "absent", "d/two": "file:two", "d/three": "file:three", "e": "dir"},
		},
		{
			name: "file over directory",
			layers: [][]tEntry{
				{tFile("a/b/c", "c", 0o644)},
				{tFile("a", "file", 0o644)},
			},
			want: map[string]string{"a": "file:file", "a/b": "absent"},
		},
		{
			name: "directory over file",
			layers: [][]tEntry{
				{tFile("a", "file", 0o644)},
				{tDir("a/", 0o755), tFile("a/x", "x", 0o644)},
			},
			want: map[string]string{"a": "dir", "a/x": "file:x"},
		},
		{
			name: "symlink over file, file over symlink, directory over symlink",
			layers: [][]tEntry{
				{tFile("a", "file", 0o644), tSymlink("b", "/etc"), tSymlink("c", "/etc")},
				{tSymlink("a", "target"), tFile("b", "file", 0o644), tDir("c/", 0o755), tFile("c/f", "f", 0o644)},
			},
			want: map[string]string{"a": "link:target", "b": "file:file", "c": "dir", "c/f": "file:f"},
		},
		{
			name: "directory over directory keeps its children and takes the new mode",
			layers: [][]tEntry{
				{tDir("d/", 0o755), tFile("d/x", "x", 0o644)},
				{tDir("d/", 0o750), tFile("d/y", "y", 0o644)},
			},
			want:  map[string]string{"d/x": "file:x", "d/y": "file:y"},
			modes: map[string]fs.FileMode{"d": fs.ModeDir | 0o750},
		},
		{
			name: "hardlink to a lower layer's file",
			layers: [][]tEntry{
				{tFile("a", "one", 0o644)},
				{tHardlink("b", "a")},
			},
			want:   map[string]string{"a": "file:one", "b": "file:one"},
			nlinks: map[string]uint64{"a": 2, "b": 2},
		},
		{
			name: "hardlink whose target a later layer replaces",
			layers: [][]tEntry{
				{tFile("a", "one", 0o644)},
				{tHardlink("b", "a")},
				{tFile("a", "two", 0o644)},
			},
			want:   map[string]string{"a": "file:two", "b": "file:one"},
			nlinks: map[string]uint64{"a": 1, "b": 1},
		},
		{
			name: "hardlink whose target its own layer replaces after it",
			layers: [][]tEntry{
				{tFile("a", "one", 0o644)},
				{tHardlink("b", "a"), tFile("a", "two", 0o644)},
			},
			want: map[string]string{"a": "file:two", "b": "file:one"},
		},
		{
			name: "hardlink to a file its own layer replaced before it",
			layers: [][]tEntry{
				{tFile("a", "one", 0o644)},
				{tFile("a", "two", 0o644), tHardlink("b", "a")},
			},
			want:   map[string]string{"a": "file:two", "b": "file:two"},
			nlinks: map[string]uint64{"a": 2},
		},
		{
			name: "hardlink whose target a later layer whites out",
			layers: [][]tEntry{
				{tFile("d/a", "one", 0o644)},
				{tHardlink("b", "d/a")},
				{tWhiteout("", "d")},
			},
			want:   map[string]string{"d": "absent", "b": "file:one"},
			nlinks: map[string]uint64{"b": 1},
		},
		{
			name: "hardlink replaced by a later layer leaves its target alone",
			layers: [][]tEntry{
				{tFile("a", "one", 0o644), tHardlink("b", "a")},
				{tFile("b", "two", 0o644)},
			},
			want:   map[string]string{"a": "file:one", "b": "file:two"},
			nlinks: map[string]uint64{"a": 1},
		},
		{
			name: "mount points whited out or missing are created",
			layers: [][]tEntry{
				{tFile("tmp/x", "x", 0o644), tDir("proc/", 0o555)},
				{tWhiteout("", "tmp"), tWhiteout("", "proc")},
			},
			want: map[string]string{"tmp": "dir", "tmp/x": "absent", "proc": "dir", "sys": "dir", "dev": "dir", "run": "dir"},
			modes: map[string]fs.FileMode{
				"tmp": fs.ModeDir | fs.ModeSticky | 0o777,
			},
		},
		{
			name: "device nodes skipped, setuid and setgid dropped, aufs metadata ignored",
			layers: [][]tEntry{
				{tFile("bin/su", "su", 0o4755), tFile("bin/wall", "wall", 0o2755)},
				{tSpecial("dev/null", tar.TypeChar), tSpecial("fifo", tar.TypeFifo), tFile(".wh..wh.plnk/1.2", "x", 0o644), tFile(".wh..wh.aufs", "", 0o644)},
			},
			want: map[string]string{"dev/null": "absent", "fifo": "absent", ".wh..wh.aufs": "absent", "bin/su": "file:su"},
			modes: map[string]fs.FileMode{
				"bin/su": 0o755, "bin/wall": 0o755,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t)
			img := imageOf(t, "test/"+tc.name, tc.layers...)
			ref := flatten(t, c, img)
			if !ref.Extracted || ref.Path != c.ImagePath(img.Digest) || ref.Digest != img.Digest {
				t.Errorf("Ref = {Path %s, Digest %s, Extracted %v}, want {%s, %s, true}", ref.Path, ref.Digest, ref.Extracted, c.ImagePath(img.Digest), img.Digest)
			}
			assertTree(t, ref.Path, tc.want)
			for name, want := range tc.nlinks {
				if got := nlink(t, filepath.Join(ref.Path, name)); got != want {
					t.Errorf("%s: %d links, want %d", name, got, want)
				}
			}
			for name, want := range tc.modes {
				if got := lstat(t, filepath.Join(ref.Path, name)).Mode(); got != want {
					t.Errorf("%s: mode %v, want %v", name, got, want)
				}
			}
			for _, mp := range MountPoints {
				if fi := lstat(t, filepath.Join(ref.Path, mp)); !fi.IsDir() {
					t.Errorf("/%s: mode %v, want a directory", mp, fi.Mode())
				}
			}
			// No whiteout is ever written into the tree.
			filepath.WalkDir(ref.Path, func(p string, d fs.DirEntry, err error) error {
				if err == nil && strings.HasPrefix(d.Name(), ".wh.") {
					t.Errorf("%s is in the tree", p)
				}
				return nil
			})
			assertNoTemps(t, c)
		})
	}
}

func TestImageRefusesUnsafeEntries(t *testing.T) {
	t.Parallel()
	// outside is a directory next to the cache that no layer may write
	// into, with a file no whiteout may remove.
	cases := []struct {
		name   string
		layers func(outside string) [][]tEntry
		// layer is the 1-based number of the layer the error must name.
		layer int
	}{
		{
			name: "write through a lower layer's symlink",
			layers: func(outside string) [][]tEntry {
				return [][]tEntry{{tSymlink("a", outside)}, {tFile("a/pwned", "x", 0o644)}}
			},
			layer: 2,
		},
		{
			name: "write through a lower layer's relative symlink",
			layers: func(outside string) [][]tEntry {
				return [][]tEntry{{tSymlink("a", "../../../../../../../../"+outside)}, {tFile("a/pwned", "x", 0o644)}}
			},
			layer: 2,
		},
		{
			name: "directory entry through a lower layer's symlink",
			layers: func(outside string) [][]tEntry {
				return [][]tEntry{{tSymlink("a", outside)}, {tDir("a/sub/", 0o755)}}
			},
			layer: 2,
		},
		{
			name: "whiteout through a lower layer's symlink",
			layers: func(outside string) [][]tEntry {
				return [][]tEntry{{tSymlink("a", outside)}, {tWhiteout("a", "keep")}}
			},
			layer: 2,
		},
		{
			name: "opaque marker through a lower layer's symlink",
			layers: func(outside string) [][]tEntry {
				return [][]tEntry{{tSymlink("a", outside)}, {tOpaque("a")}}
			},
			layer: 2,
		},
		{
			name: "hardlink to a lower layer's symlink",
			layers: func(outside string) [][]tEntry {
				return [][]tEntry{{tSymlink("a", outside+"/keep")}, {tHardlink("b", "a")}}
			},
			layer: 2,
		},
		{
			name: "dot-dot in a layer",
			layers: func(string) [][]tEntry {
				return [][]tEntry{{tFile("ok", "x", 0o644)}, {tFile("a/../../pwned", "x", 0o644)}}
			},
			layer: 2,
		},
		{
			name: "absolute path in a layer",
			layers: func(outside string) [][]tEntry {
				return [][]tEntry{{tFile(outside+"/pwned", "x", 0o644)}}
			},
			layer: 1,
		},
		{
			name: "hardlink out of the tree",
			layers: func(outside string) [][]tEntry {
				return [][]tEntry{{tFile("ok", "x", 0o644)}, {tHardlink("b", "../"+filepath.Base(outside)+"/keep")}}
			},
			layer: 2,
		},
		{
			name: "whiteout of dot-dot",
			layers: func(string) [][]tEntry {
				return [][]tEntry{{tFile("d/ok", "x", 0o644)}, {tFile("d/.wh...", "", 0o644)}}
			},
			layer: 2,
		},
		{
			name: "hardlink to a whited-out file",
			layers: func(string) [][]tEntry {
				return [][]tEntry{{tFile("a", "x", 0o644)}, {tWhiteout("", "a"), tHardlink("b", "a")}}
			},
			layer: 2,
		},
		{
			// As docker: only a directory entry replaces a file.
			name: "entry under a lower layer's file",
			layers: func(string) [][]tEntry {
				return [][]tEntry{{tFile("a", "x", 0o644)}, {tFile("a/b", "x", 0o644)}}
			},
			layer: 2,
		},
		{
			name: "file over a directory of its own layer",
			layers: func(string) [][]tEntry {
				return [][]tEntry{{tFile("d/x", "x", 0o644)}, {tDir("d/", 0o755), tFile("d", "x", 0o644)}}
			},
			layer: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t)
			outside := filepath.Join(filepath.Dir(c.Dir), "outside")
			mustMkdir(t, outside, 0o755)
			if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			layers := tc.layers(outside)
			img := imageOf(t, "test/unsafe", layers...)
			ref, err := c.Image(img)
			if err == nil {
				ref.Close()
				t.Fatalf("Image succeeded, want an UnsafeEntryError")
			}
			var unsafe *UnsafeEntryError
			if !errors.As(err, &unsafe) {
				t.Fatalf("Image: %v (%T), want an UnsafeEntryError", err, err)
			}
			if want := fmt.Sprintf("layer %d of %d", tc.layer, len(layers)); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "test/unsafe") {
				t.Errorf("Image: %v; want the image and %q named", err, want)
			}
			if got := dirNames(t, outside); !slices.Equal(got, []string{"keep"}) {
				t.Errorf("outside holds %q, want only keep", got)
			}
			assertNothingCached(t, c)
		})
	}
}

func TestImageLayerErrors(t *testing.T) {
	t.Parallel()
	good, _ := memLayer(t, tFile("a", "a", 0o644))
	data := makeTar(t, tFile("b", "bbbbbbbb", 0o644), tFile("c", "c", 0o644))
	corrupt := bytes.Clone(data)
	corrupt[512] = 'X'      // b's content: the tar still reads
	truncated := data[:515] // in b's content
	openErr := errors.New("blob gone")
	cases := []struct {
		name  string
		layer Layer
		check func(t *testing.T, err error)
	}{
		{
			name:  "content does not hash to the DiffID",
			layer: Layer{DiffID: "sha256:" + sha256Hex(data), Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(corrupt)), nil }},
			check: func(t *testing.T, err error) {
				var m *DigestMismatchError
				if !errors.As(err, &m) || m.Expected != sha256Hex(data) || m.Actual != sha256Hex(corrupt) {
					t.Errorf("Image: %v (%T), want a DigestMismatchError from %s to %s", err, err, sha256Hex(data), sha256Hex(corrupt))
				}
			},
		},
		{
			name:  "truncated layer",
			layer: Layer{DiffID: "sha256:" + sha256Hex(data), Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(truncated)), nil }},
			check: func(t *testing.T, err error) {
				var m *DigestMismatchError
				if !errors.As(err, &m) {
					t.Errorf("Image: %v (%T), want a DigestMismatchError", err, err)
				}
			},
		},
		{
			name:  "truncated layer with the truncated bytes' DiffID",
			layer: Layer{DiffID: "sha256:" + sha256Hex(truncated), Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(truncated)), nil }},
			check: func(t *testing.T, err error) {
				if !strings.Contains(err.Error(), "truncated or corrupt") {
					t.Errorf("Image: %v, want it to say the layer is truncated or corrupt", err)
				}
			},
		},
		{
			name:  "Open fails",
			layer: Layer{DiffID: "sha256:" + sha256Hex(data), Open: func() (io.ReadCloser, error) { return nil, openErr }},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, openErr) {
					t.Errorf("Image: %v, want it to wrap %v", err, openErr)
				}
				var ce *CacheError
				if errors.As(err, &ce) {
					t.Errorf("Image: %v blames the cache", err)
				}
			},
		},
		{
			name:  "Open fails with an errno",
			layer: Layer{DiffID: "sha256:" + sha256Hex(data), Open: func() (io.ReadCloser, error) { return os.Open("/nonexistent/blob") }},
			check: func(t *testing.T, err error) {
				var ce *CacheError
				if !errors.Is(err, fs.ErrNotExist) || errors.As(err, &ce) {
					t.Errorf("Image: %v, want the layer's ENOENT, not the cache's", err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t)
			img := withDigest(ImageTree{Name: "test/broken", Layers: []Layer{good, tc.layer}})
			ref, err := c.Image(img)
			if err == nil {
				ref.Close()
				t.Fatal("Image succeeded, want an error")
			}
			if short := strings.TrimPrefix(tc.layer.DiffID, "sha256:")[:12]; !strings.Contains(err.Error(), "layer 2 of 2") || !strings.Contains(err.Error(), short) || !strings.Contains(err.Error(), "test/broken") {
				t.Errorf("Image: %v; want the image, the layer and its DiffID %s named", err, short)
			}
			tc.check(t, err)
			assertNothingCached(t, c)
		})
	}
}

func TestImageBadInput(t *testing.T) {
	t.Parallel()
	good, _ := memLayer(t, tFile("a", "a", 0o644))
	cases := []struct {
		name string
		img  ImageTree
	}{
		{"digest without algorithm", ImageTree{Name: "x", Digest: sha256Hex(nil), Layers: []Layer{good}}},
		{"digest too short", ImageTree{Name: "x", Digest: "sha256:abc", Layers: []Layer{good}}},
		{"path in the digest", ImageTree{Name: "x", Digest: "sha256:../../" + sha256Hex(nil)[6:], Layers: []Layer{good}}},
		{"bad DiffID", withDigest(ImageTree{Name: "x", Layers: []Layer{{DiffID: "md5:00", Open: good.Open}}})},
		{"no Open", withDigest(ImageTree{Name: "x", Layers: []Layer{{DiffID: good.DiffID}}})},
		{"negative size limit", withDigest(ImageTree{Name: "x", Layers: []Layer{good}, MaxSize: -1})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t)
			if ref, err := c.Image(tc.img); err == nil {
				ref.Close()
				t.Fatal("Image succeeded, want an error")
			}
			assertNothingCached(t, c)
		})
	}
}

func TestImageSizeLimit(t *testing.T) {
	t.Parallel()
	body := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		name    string
		max     int64
		layers  [][]tEntry
		wantErr bool
	}{
		{
			name:   "exactly at the limit",
			max:    100,
			layers: [][]tEntry{{tFile("a", body(50), 0o644)}, {tFile("b", body(50), 0o644), tHardlink("c", "a")}},
		},
		{
			name:    "over the limit across layers",
			max:     100,
			layers:  [][]tEntry{{tFile("a", body(60), 0o644)}, {tFile("b", body(41), 0o644)}},
			wantErr: true,
		},
		{
			name:    "replaced files count",
			max:     100,
			layers:  [][]tEntry{{tFile("a", body(60), 0o644)}, {tFile("a", body(60), 0o644)}},
			wantErr: true,
		},
		{
			name:    "one file larger than the limit",
			max:     1 << 20,
			layers:  [][]tEntry{{tFile("bomb", body(1<<20+1), 0o644)}},
			wantErr: true,
		},
		{
			name:   "zero is the default",
			layers: [][]tEntry{{tFile("a", body(1<<20), 0o644)}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t)
			img := imageOf(t, "test/size", tc.layers...)
			img.MaxSize = tc.max
			ref, err := c.Image(img)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Image: %v", err)
				}
				ref.Close()
				return
			}
			if err == nil {
				ref.Close()
				t.Fatal("Image succeeded, want an ImageSizeError")
			}
			var se *ImageSizeError
			if !errors.As(err, &se) || se.Name != "test/size" || se.Limit != tc.max {
				t.Fatalf("Image: %v (%T), want an ImageSizeError{test/size, %d}", err, err, tc.max)
			}
			if !strings.Contains(err.Error(), "test/size") {
				t.Errorf("Image: %v does not name the image", err)
			}
			assertNothingCached(t, c)
		})
	}
	if got := (&ImageSizeError{Name: "img", Limit: DefaultMaxImageSize}).Error(); !strings.Contains(got, "8 GiB") {
		t.Errorf("ImageSizeError says %q, want the limit as 8 GiB", got)
	}
}

func TestImageWarm(t *testing.T) {
	t.Parallel()
	c := newCache(t)
	l1, opens1 := memLayer(t, tFile("etc/hostname", "box\n", 0o644))
	l2, opens2 := memLayer(t, tFile("etc/motd", "hi\n", 0o644))
	img := withDigest(ImageTree{Name: "test/warm", Layers: []Layer{l1, l2}})
	ref1 := flatten(t, c, img)
	ref2 := flatten(t, c, img)
	if !ref1.Extracted || ref2.Extracted || ref1.Path != ref2.Path {
		t.Errorf("Refs {%s, %v} and {%s, %v}, want the same path, extracted once", ref1.Path, ref1.Extracted, ref2.Path, ref2.Extracted)
	}
	if n1, n2 := opens1.Load(), opens2.Load(); n1 != 1 || n2 != 1 {
		t.Errorf("layers opened %d and %d times, want once each", n1, n2)
	}
	if got, want := dirNames(t, filepath.Join(c.Dir, "rootfs")), []string{imageKey(img.Digest), imageKey(img.Digest) + ".lock"}; !slices.Equal(got, want) {
		t.Errorf("rootfs dir holds %q, want %q", got, want)
	}

	// Unused, it is pruned; in use, it is kept.
	if err := c.Prune(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ref1.Path); err != nil {
		t.Errorf("Prune removed a tree in use: %v", err)
	}
	ref1.Close()
	ref2.Close()
	if err := c.Prune(); err != nil {
		t.Fatal(err)
	}
	assertNothingCached(t, c)
}

func TestImageConcurrent(t *testing.T) {
	t.Parallel()
	c := newCache(t)
	l1, opens1 := memLayer(t, manyFiles(200)...)
	l2, opens2 := memLayer(t, tWhiteout("many", "f0"))
	img := withDigest(ImageTree{Name: "test/concurrent", Layers: []Layer{l1, l2}})
	const n = 8
	refs := make([]*Ref, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { refs[i], errs[i] = c.Image(img) })
	}
	wg.Wait()
	extracted := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Image %d: %v", i, errs[i])
		}
		defer refs[i].Close()
		if refs[i].Extracted {
			extracted++
		}
		if refs[i].Path != refs[0].Path {
			t.Errorf("Image %d returned %s, want %s", i, refs[i].Path, refs[0].Path)
		}
	}
	if extracted != 1 || opens1.Load() != 1 || opens2.Load() != 1 {
		t.Errorf("%d calls extracted, layers opened %d and %d times; want 1 each", extracted, opens1.Load(), opens2.Load())
	}
	assertNotExist(t, filepath.Join(refs[0].Path, "many/f0"))
	assertNoTemps(t, c)
}

func TestImageRootOwned(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a root-owned tree needs root to chown; CI runs these tests as root")
	}
	t.Parallel()
	c := newCache(t)
	c.RootOwned = true
	owned := func(e tEntry) tEntry {
		e.hdr.Uid, e.hdr.Gid = 1000, 1000
		return e
	}
	img := imageOf(t, "test/root",
		[]tEntry{owned(tDir("home/user/", 0o777)), owned(tFile("home/user/f", "x", 0o666)), owned(tSymlink("l", "home")), owned(tFile("bin/su", "su", 0o4755))},
		[]tEntry{owned(tDir("shared/", 0o1777)), owned(tFile("home/user/g", "y", 0o640)), owned(tHardlink("h", "home/user/f"))},
	)
	ref := flatten(t, c, img)
	err := filepath.WalkDir(ref.Path, func(p string, d fs.DirEntry, err error) error {
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
		if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			t.Errorf("%s: mode %v keeps setuid or setgid", p, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := lstat(t, filepath.Join(ref.Path, "shared")).Mode(); got != fs.ModeDir|fs.ModeSticky|0o755 {
		t.Errorf("shared: mode %v, want dtrwxr-xr-x", got)
	}
}

// TestImagePublishIsDurable checks that an image tree is published as an
// archive's is: synced under its temporary name, renamed, the rename synced;
// and that a failed sync leaves nothing.
func TestImagePublishIsDurable(t *testing.T) {
	c := newCache(t)
	img := imageOf(t, "test/durable", []tEntry{tFile("etc/hostname", "box\n", 0o644)}, []tEntry{tFile("etc/motd", "hi\n", 0o644)})
	final := c.ImagePath(img.Digest)
	fail := map[string]error{}
	calls := recordSyncs(t, fail, func(op, dir string) {
		if len(fail) > 0 {
			return
		}
		switch op {
		case "syncfs":
			if !strings.HasPrefix(filepath.Base(dir), ".tmp-") || filepath.Dir(dir) != filepath.Dir(final) {
				t.Errorf("syncfs of %s, want the temporary tree", dir)
			} else if got := readFile(t, filepath.Join(dir, "etc/motd")); got != "hi\n" {
				t.Errorf("syncfs before the tree was written: etc/motd = %q", got)
			}
			assertNotExist(t, final)
		case "fsync":
			if _, err := os.Stat(final); err != nil {
				t.Errorf("fsync of %s before the rename: %v", dir, err)
			}
		}
	})
	ref := flatten(t, c, img)
	if len(*calls) != 2 || !strings.HasPrefix((*calls)[0], "syncfs ") || (*calls)[1] != "fsync "+filepath.Dir(final) {
		t.Errorf("syncs %q, want a syncfs of the temporary tree, then an fsync of %s", *calls, filepath.Dir(final))
	}
	ref.Close()

	c2 := newCache(t)
	fail["fsync"] = syscall.EIO
	if ref, err := c2.Image(img); err == nil {
		ref.Close()
		t.Fatal("Image succeeded although the fsync failed")
	} else if !errors.Is(err, syscall.EIO) {
		t.Errorf("Image: %v, want EIO", err)
	}
	assertNothingCached(t, c2)
}

// TestPruneKeepsImageTrees: a start's prune (KeepImageTrees, as Prepare
// sets it) leaves an unused image's tree to mrtd prune; and a warm use
// marks when it was last used.
func TestPruneKeepsImageTrees(t *testing.T) {
	t.Parallel()
	c := newCache(t)
	l, _ := memLayer(t, tFile("etc/hostname", "box\n", 0o644))
	img := withDigest(ImageTree{Name: "test/keep", Layers: []Layer{l}})
	ref := flatten(t, c, img)
	ref.Close()
	old := time.Now().Add(-time.Hour)
	os.Chtimes(ref.Path+".lock", old, old)
	ref = flatten(t, c, img)
	ref.Close()
	if fi, err := os.Stat(ref.Path + ".lock"); err != nil || time.Since(fi.ModTime()) > time.Minute {
		t.Errorf("a warm use did not mark the tree used: %v %v", fi.ModTime(), err)
	}
	c.KeepImageTrees = true
	if err := c.Prune(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ref.Path); err != nil {
		t.Fatalf("a start's prune removed an image's tree: %v", err)
	}
	c.KeepImageTrees = false
	if err := c.Prune(); err != nil {
		t.Fatal(err)
	}
	assertNothingCached(t, c)
}
