package image

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/rootfs"
)

// twoImages is a cache holding two images, a's in use.
type twoImages struct {
	trees *rootfs.Cache
	dir   string
	// a and b are the images' tags; closeA lets a go.
	a, b   string
	closeA func()
}

// cacheWithTwoImages pulls test/a:1 and test/b:1, which share their
// bottom layer, and flattens both; a's tree stays in use until closeA or
// the test's end, b's is let go.
func cacheWithTwoImages(t *testing.T) twoImages {
	t.Helper()
	isolate(t)
	host, _ := testRegistry(t, nil)
	base := tarLayer(t, "etc/base", "base")
	imgA := testImage(t, compression.GZip, true, base, tarLayer(t, "etc/a", "a"))
	imgB := testImage(t, compression.GZip, true, base, tarLayer(t, "etc/b", "b"))
	push(t, host+"/test/a:1", imgA)
	push(t, host+"/test/b:1", imgB)
	root := t.TempDir()
	trees := &rootfs.Cache{Dir: root, DropSetID: true}
	dir := filepath.Join(root, "images")
	opts := Options{Dir: dir}
	ra, err := NewSource(mustParse(t, host+"/test/a:1"), opts).Open(trees)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ra.Close() })
	rb, err := NewSource(mustParse(t, host+"/test/b:1"), opts).Open(trees)
	if err != nil {
		t.Fatal(err)
	}
	rb.Close()
	return twoImages{trees: trees, dir: dir, a: host + "/test/a:1", b: host + "/test/b:1", closeA: func() { ra.Close() }}
}

// putBlob writes data into the blob cache as a blob, modified at mtime.
func putBlob(t *testing.T, dir string, data []byte, mtime time.Time) string {
	t.Helper()
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	p := filepath.Join(dir, "blobs", "sha256", h)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrune(t *testing.T) {
	c := cacheWithTwoImages(t)
	trees, dir, a, b := c.trees, c.dir, c.a, c.b
	before, err := List(trees, dir)
	if err != nil {
		t.Fatal(err)
	}
	ia, ib := before[0], before[1]
	now := time.Now()
	oldOrphan := putBlob(t, dir, []byte("no image has me"), now.Add(-time.Hour))
	youngOrphan := putBlob(t, dir, []byte("a pull may be writing my image"), now)
	// An archive's tree no process uses: what every start prunes.
	archive := trees.RootfsPath(sha256Hex("archive"))
	if err := os.MkdirAll(archive, 0o700); err != nil {
		t.Fatal(err)
	}

	p, err := prune(trees, dir, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Images) != 1 || p.Images[0].Digest != ib.Digest {
		t.Fatalf("Prune removed images %+v, want %s only", p.Images, b)
	}
	if len(p.Kept) != 1 || p.Kept[0].Digest != ia.Digest || !p.Kept[0].InUse {
		t.Errorf("Prune kept %+v, want %s, in use", p.Kept, a)
	}
	if !slices.Equal(p.Entries, []string{oldOrphan, archive}) && !slices.Equal(p.Entries, []string{archive, oldOrphan}) {
		t.Errorf("Prune removed entries %v, want %s and %s", p.Entries, archive, oldOrphan)
	}
	for _, gone := range []string{ib.Tree, oldOrphan, archive} {
		if exists(gone) {
			t.Errorf("%s is still there", gone)
		}
	}
	for _, there := range []string{ia.Tree, youngOrphan} {
		if !exists(there) {
			t.Errorf("%s was removed", there)
		}
	}
	// b's blobs are gone but for the layer a shares; a's are all there.
	for _, h := range ib.blobs {
		if exists(filepath.Join(dir, "blobs", "sha256", h)) != slices.Contains(ia.blobs, h) {
			t.Errorf("blob %s of b: there %v, shared with a %v", h, !slices.Contains(ia.blobs, h), slices.Contains(ia.blobs, h))
		}
	}
	if p.Images[0].Freed <= p.Images[0].TreeBytes || p.Bytes < p.Images[0].Freed {
		t.Errorf("freed %d bytes for b (tree %d), %d in all", p.Images[0].Freed, p.Images[0].TreeBytes, p.Bytes)
	}
	after, err := List(trees, dir)
	if err != nil || len(after) != 1 || !slices.Equal(after[0].Refs, []string{a}) || !after[0].Complete {
		t.Fatalf("List after Prune = %+v, %v; want %s, complete", after, err, a)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "refs")); len(ents) != 1 {
		t.Errorf("%d tags recorded after Prune, want a's only", len(ents))
	}
	if _, err := os.Stat(ib.Tree + ".lock"); !os.IsNotExist(err) {
		t.Errorf("b's lock file is left: %v", err)
	}

	// Nothing in use: everything goes but the young orphan.
	c.closeA()
	p, err = prune(trees, dir, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Images) != 1 || p.Images[0].Digest != ia.Digest || len(p.Kept) != 0 {
		t.Fatalf("second Prune removed %+v and kept %+v, want %s removed", p.Images, p.Kept, a)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256")); len(ents) != 1 || ents[0].Name() != filepath.Base(youngOrphan) {
		t.Errorf("blobs left: %v, want the young orphan only", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "refs")); len(ents) != 0 {
		t.Errorf("tags left: %v", ents)
	}
	if imgs, _ := List(trees, dir); len(imgs) != 0 {
		t.Errorf("List after pruning all = %+v", imgs)
	}
}

func TestPruneKeepsAPullUnderWay(t *testing.T) {
	c := cacheWithTwoImages(t)
	trees, dir, b := c.trees, c.dir, c.b
	before, _ := List(trees, dir)
	ib := before[1]
	// b's top layer is missing, and a pull is writing it.
	m := ib.blobs[len(ib.blobs)-1]
	if err := os.Remove(filepath.Join(dir, "blobs", "sha256", m)); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.CreateTemp(filepath.Join(dir, "blobs", "sha256"), ".tmp-"+m[:12]+"-")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	if err := unix.Flock(int(tmp.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour) // past pullGrace: the lock alone keeps it
	p, err := prune(trees, dir, nil, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Images) != 0 || len(p.Kept) != 2 {
		t.Errorf("with a pull of %s under way, Prune removed %+v and kept %d images, want none removed", b, p.Images, len(p.Kept))
	}
	if !exists(tmp.Name()) {
		t.Errorf("the download under way was removed")
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
