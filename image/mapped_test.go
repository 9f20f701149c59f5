package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/mrt-project/mrt/rootfs"
)

// hostUID is the id archive uid 0 maps to through testIDMap.
var hostUID = func() int {
	if os.Geteuid() == 0 {
		return 200000
	}
	return os.Getuid()
}()

// testIDMap maps archive ids as a keep-id map does: as root, onto ids that
// are not this process's (a subordinate range); otherwise archive id 0
// onto this process's own, all an unprivileged test may chown to.
func testIDMap(key string) *rootfs.IDMap {
	if os.Geteuid() != 0 {
		return &rootfs.IDMap{
			UID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getuid()), Size: 1}},
			GID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getgid()), Size: 1}},
			Key: key,
		}
	}
	return &rootfs.IDMap{
		UID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}},
		GID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 300000, Size: 65536}},
		Key: key,
	}
}

// openMapped flattens the image ref names through testIDMap(key), as a
// start with --user does, and returns the tree in use.
func openMapped(t *testing.T, root, dir, ref, key string) *rootfs.Ref {
	t.Helper()
	mapped := &rootfs.Cache{Dir: root, DropSetID: true, IDMap: testIDMap(key)}
	r, err := NewSource(mustParse(t, ref), Options{Dir: dir}).Open(mapped)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if r.Path != mapped.ImagePath(r.Digest) {
		t.Fatalf("the mapped tree is %+v, want one of its own at %s", r, mapped.ImagePath(r.Digest))
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(r.Path, "etc", "b"), &st); err != nil || int(st.Uid) != hostUID {
		t.Fatalf("etc/b of the mapped tree: uid %d, %v; want %d", st.Uid, err, hostUID)
	}
	return r
}

// findImage returns the image with this digest in imgs.
func findImage(t *testing.T, imgs []Cached, digest string) Cached {
	t.Helper()
	i := slices.IndexFunc(imgs, func(img Cached) bool { return img.Digest == digest })
	if i < 0 {
		t.Fatalf("no image %s in %+v", digest, imgs)
	}
	return imgs[i]
}

func TestListMappedTrees(t *testing.T) {
	c := cacheWithTwoImages(t)
	trees, dir := c.trees, c.dir
	before, err := List(trees, dir)
	if err != nil {
		t.Fatal(err)
	}
	ib := before[1]
	if len(ib.MappedTrees) != 0 || ib.InUse {
		t.Fatalf("b before its mapped tree: %+v", ib)
	}
	ref := openMapped(t, trees.Dir, dir, c.b, "k1")

	imgs, err := List(trees, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 {
		t.Fatalf("List = %+v, want a and b: a mapped tree is no image of its own", imgs)
	}
	b := findImage(t, imgs, ib.Digest)
	if len(b.MappedTrees) != 1 {
		t.Fatalf("b's mapped trees: %+v, want one", b.MappedTrees)
	}
	m := b.MappedTrees[0]
	if m.Key != "k1" || m.Path != ref.Path || m.Bytes <= 0 || !m.InUse || !slices.Contains(m.Pids, os.Getpid()) {
		t.Errorf("b's mapped tree = %+v, want k1 at %s, in use by this process", m, ref.Path)
	}
	if b.Tree != ib.Tree || b.TreeBytes != ib.TreeBytes+m.Bytes {
		t.Errorf("b's tree %s (%d bytes), want %s with %d+%d bytes", b.Tree, b.TreeBytes, ib.Tree, ib.TreeBytes, m.Bytes)
	}
	if !b.InUse || !slices.Equal(b.Pids, []int{os.Getpid()}) {
		t.Errorf("b: in use %v by %v; want in use by this process, through its mapped tree", b.InUse, b.Pids)
	}
	if b.LastUsed.Before(ib.LastUsed) {
		t.Errorf("b last used %v, before %v", b.LastUsed, ib.LastUsed)
	}
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	json.Unmarshal(raw, &fields)
	for _, k := range []string{"tree", "treeBytes", "mappedTrees", "inUse", "pids"} {
		if fields[k] == nil {
			t.Errorf("b in JSON lacks %q: %s", k, raw)
		}
	}

	// Let go, and its unmapped tree removed (what every start prunes,
	// in a process that may not change mapped trees): b is listed by
	// its mapped tree alone.
	ref.Close()
	plain := &rootfs.Cache{Dir: trees.Dir}
	if err := plain.Prune(); err != nil {
		t.Fatal(err)
	}
	if exists(ib.Tree) || !exists(m.Path) {
		t.Fatalf("after a start's prune: unmapped tree there %v, mapped %v; want the mapped one only", exists(ib.Tree), exists(m.Path))
	}
	imgs, err = List(trees, dir)
	if err != nil {
		t.Fatal(err)
	}
	b = findImage(t, imgs, ib.Digest)
	if b.Tree != m.Path || b.TreeBytes != m.Bytes || len(b.MappedTrees) != 1 || b.InUse || b.MappedTrees[0].InUse || len(b.Pids) != 0 {
		t.Errorf("b with its mapped tree alone = %+v, want tree %s (%d bytes), not in use", b, m.Path, m.Bytes)
	}
	if !b.Complete || b.BlobBytes != ib.BlobBytes || !slices.Equal(b.Refs, ib.Refs) {
		t.Errorf("b's blobs and refs: %+v, want those of %+v", b, ib)
	}
}

// mappedArchiveTree extracts an archive through testIDMap(key), as a
// start with --user from an archive does, and returns its tree.
func mappedArchiveTree(t *testing.T, root, key string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "etc/b", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	data := buf.Bytes()
	sum := sha256.Sum256(data)
	mapped := &rootfs.Cache{Dir: root, DropSetID: true, IDMap: testIDMap(key)}
	r, err := mapped.Rootfs(&rootfs.Archive{
		Name:   "archive.tar",
		Digest: hex.EncodeToString(sum[:]),
		Size:   int64(len(data)),
		Open:   func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	return r.Path
}

// TestPruneMappedTrees: an image with trees made for --user is removed,
// all its trees with it, only by a process that may change them, and only
// when none of its trees is in use; otherwise it is kept whole.
func TestPruneMappedTrees(t *testing.T) {
	c := cacheWithTwoImages(t) // a in use
	trees, dir := c.trees, c.dir
	before, err := List(trees, dir)
	if err != nil {
		t.Fatal(err)
	}
	ia, ib := before[0], before[1]
	ref := openMapped(t, trees.Dir, dir, c.b, "k1")
	mappedB := ref.Path
	ref.Close()
	archive := mappedArchiveTree(t, trees.Dir, "k1")
	listed, err := List(trees, dir)
	if err != nil {
		t.Fatal(err)
	}
	ib = findImage(t, listed, ib.Digest)
	blobsOfB := func() (n int) {
		for _, h := range ib.blobs {
			if exists(filepath.Join(dir, "blobs", "sha256", h)) {
				n++
			}
		}
		return n
	}
	assertKept := func(why string, p *Pruned) {
		t.Helper()
		for _, path := range []string{ib.Tree, mappedB, mappedB + ".lock"} {
			if !exists(path) {
				t.Errorf("%s: %s was removed", why, path)
			}
		}
		if len(p.Images) != 0 || len(p.Kept) != 2 {
			t.Errorf("%s: removed %+v, kept %+v; want a and b kept", why, p.Images, p.Kept)
		}
		if n := blobsOfB(); n != len(ib.blobs) {
			t.Errorf("%s: %d of b's %d blobs left", why, n, len(ib.blobs))
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, "refs")); len(ents) != 2 {
			t.Errorf("%s: %d tags left, want 2", why, len(ents))
		}
	}

	// A process outside mrtd's user namespace keeps b whole, its
	// unmapped tree too, though nothing uses it, and says why.
	p, err := Prune(trees, dir)
	if err != nil {
		t.Fatal(err)
	}
	assertKept("without MappedTrees", p)
	if !slices.Equal(p.KeptMapped, []string{ib.Digest}) {
		t.Errorf("KeptMapped = %v, want b's %s", p.KeptMapped, ib.Digest)
	}
	if slices.Contains(p.Entries, archive) || !exists(archive) {
		t.Errorf("an archive's mapped tree is removed (entries %v): %v", p.Entries, !exists(archive))
	}

	// One inside it keeps b while any of its trees is in use: its
	// mapped tree held by an open tree, then by Claim. (keep holds its
	// unmapped tree, which a start with --user holds too.)
	inside := &rootfs.Cache{Dir: trees.Dir, MappedTrees: true}
	// The archive's mapped tree, which nothing uses, goes as any
	// unused tree.
	held := openMapped(t, trees.Dir, dir, c.b, "k1")
	archiveBytes := rootfs.DiskUsage(archive)
	p, err = Prune(inside, dir, ib.Tree)
	if err != nil {
		t.Fatal(err)
	}
	assertKept("a mapped tree open", p)
	if !slices.Contains(p.Entries, archive) || exists(archive) || exists(archive+".lock") || p.Bytes < archiveBytes {
		t.Errorf("removed entries %v, %d bytes; want the archive's mapped tree %s among them, its %d bytes counted", p.Entries, p.Bytes, archive, archiveBytes)
	}
	if kb := findImage(t, p.Kept, ib.Digest); !kb.InUse || !slices.Contains(kb.Pids, os.Getpid()) || len(p.KeptMapped) != 0 {
		t.Errorf("with its mapped tree open, b is kept as %+v, KeptMapped %v; want in use by this process, not in KeptMapped", kb, p.KeptMapped)
	}
	held.Close()
	release, err := trees.Claim(mappedB)
	if err != nil {
		t.Fatal(err)
	}
	p, err = Prune(inside, dir, ib.Tree)
	release()
	if err != nil {
		t.Fatal(err)
	}
	assertKept("a mapped tree claimed", p)
	if kb := findImage(t, p.Kept, ib.Digest); !kb.InUse {
		t.Errorf("with its mapped tree claimed, b is kept as %+v, want in use", kb)
	}

	// Nothing of b in use: all its trees go, then its blobs and tag;
	// a's stay.
	p, err = Prune(inside, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Images) != 1 || p.Images[0].Digest != ib.Digest || len(p.Kept) != 1 || p.Kept[0].Digest != ia.Digest || len(p.KeptMapped) != 0 {
		t.Fatalf("Prune with MappedTrees removed %+v, kept %+v (mapped %v); want b removed, a kept", p.Images, p.Kept, p.KeptMapped)
	}
	for _, gone := range []string{ib.Tree, ib.Tree + ".lock", mappedB, mappedB + ".lock"} {
		if exists(gone) {
			t.Errorf("%s is still there", gone)
		}
	}
	rb := p.Images[0]
	if len(rb.MappedTrees) != 1 || rb.TreeBytes != ib.TreeBytes || rb.Freed <= rb.TreeBytes {
		t.Errorf("b removed as %+v, freed %d; want its trees' %d bytes and its blobs", rb.Cached, rb.Freed, ib.TreeBytes)
	}
	if p.Bytes < rb.Freed {
		t.Errorf("freed %d bytes in all, want at least b's %d", p.Bytes, rb.Freed)
	}
	for _, h := range ib.blobs {
		if exists(filepath.Join(dir, "blobs", "sha256", h)) != slices.Contains(ia.blobs, h) {
			t.Errorf("blob %s of b: there %v, shared with a %v", h, !slices.Contains(ia.blobs, h), slices.Contains(ia.blobs, h))
		}
	}
	after, err := List(trees, dir)
	if err != nil || len(after) != 1 || after[0].Digest != ia.Digest {
		t.Errorf("List after Prune = %+v, %v; want a only", after, err)
	}
}

// TestPruneOnlyMappedTrees: an image whose only tree is a mapped one (its
// unmapped tree gone, or its blobs: a docker-archive's) is kept by a
// process outside the user namespace, and removed from inside it.
func TestPruneOnlyMappedTrees(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noBlobs bool
	}{
		{name: "blobs"},
		{name: "tree alone", noBlobs: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cacheWithTwoImages(t)
			trees, dir := c.trees, c.dir
			c.closeA()
			mapped := openMapped(t, trees.Dir, dir, c.b, "k1")
			mapped.Close()
			if err := (&rootfs.Cache{Dir: trees.Dir}).Prune(); err != nil {
				t.Fatal(err)
			}
			if tc.noBlobs {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
			}
			p, err := Prune(trees, dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Kept) != 1 || p.Kept[0].Digest != mapped.Digest || p.Kept[0].Tree != mapped.Path || !slices.Equal(p.KeptMapped, []string{mapped.Digest}) || !exists(mapped.Path) {
				t.Fatalf("without MappedTrees, Prune kept %+v (mapped %v); want b kept, by its mapped tree", p.Kept, p.KeptMapped)
			}
			if wantA := !tc.noBlobs; len(p.Images) != 1 && wantA || len(p.Images) != 0 && !wantA {
				t.Errorf("Prune removed %+v, want a only when its blobs are there", p.Images)
			}
			p, err = Prune(&rootfs.Cache{Dir: trees.Dir, MappedTrees: true}, dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Images) != 1 || p.Images[0].Digest != mapped.Digest || len(p.Kept) != 0 || exists(mapped.Path) {
				t.Errorf("with MappedTrees, Prune removed %+v and kept %+v; want b removed", p.Images, p.Kept)
			}
			if p.Images[0].Freed < p.Images[0].MappedTrees[0].Bytes || p.Images[0].MappedTrees[0].Bytes <= 0 {
				t.Errorf("freed %d for b, whose mapped tree took %d", p.Images[0].Freed, p.Images[0].MappedTrees[0].Bytes)
			}
			if imgs, _ := List(trees, dir); len(imgs) != 0 {
				t.Errorf("List after pruning all = %+v", imgs)
			}
		})
	}
}
