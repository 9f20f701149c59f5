package image

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestList(t *testing.T) {
	c := cacheWithTwoImages(t)
	trees, dir, a, b := c.trees, c.dir, c.a, c.b
	imgs, err := List(trees, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || !slices.Equal(imgs[0].Refs, []string{a}) || !slices.Equal(imgs[1].Refs, []string{b}) {
		t.Fatalf("List = %+v, want %s then %s", imgs, a, b)
	}
	ia, ib := imgs[0], imgs[1]
	if !ia.InUse || ib.InUse {
		t.Errorf("in use: a %v, b %v; want a only", ia.InUse, ib.InUse)
	}
	if !slices.Contains(ia.Pids, os.Getpid()) {
		t.Errorf("a is used by pids %v, want this process's %d among them", ia.Pids, os.Getpid())
	}
	for _, img := range imgs {
		if img.Tree != trees.ImagePath(img.Digest) || img.TreeBytes <= 0 || img.BlobBytes <= 0 || !img.Complete {
			t.Errorf("%v: tree %q (%d bytes), %d bytes of blobs, complete %v", img.Refs, img.Tree, img.TreeBytes, img.BlobBytes, img.Complete)
		}
		if img.Pulled.IsZero() || img.LastUsed.IsZero() {
			t.Errorf("%v: pulled %v, last used %v: want both", img.Refs, img.Pulled, img.LastUsed)
		}
		if len(img.blobs) != 4 { // manifest, config, two layers
			t.Errorf("%v has %d blobs, want 4", img.Refs, len(img.blobs))
		}
	}

	// A tree whose blobs are gone (or a docker-archive's) is listed too,
	// without a tag.
	rec := filepath.Join(dir, "refs")
	if err := os.RemoveAll(filepath.Join(dir, "blobs")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(rec); err != nil {
		t.Fatal(err)
	}
	imgs, err = List(trees, dir)
	if err != nil || len(imgs) != 2 {
		t.Fatalf("List without blobs = %+v, %v; want the 2 trees", imgs, err)
	}
	for _, img := range imgs {
		if len(img.Refs) != 0 || img.Tree == "" || img.BlobBytes != 0 || img.Complete {
			t.Errorf("a tree without blobs is listed as %+v", img)
		}
	}
}
