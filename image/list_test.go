package image

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/mrt-project/mrt/rootfs"
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

// TestListSources lists images pulled by digest, from an OCI layout and
// from a docker-archive under the references they came from, spelt so that
// --image takes them back from any directory.
func TestListSources(t *testing.T) {
	isolate(t)
	host, _ := testRegistry(t, nil)
	byDigest := testImage(t, compression.GZip, true, tarLayer(t, "etc/d", "d"))
	push(t, host+"/test/d:1", byDigest)
	fromLayout := testImage(t, compression.GZip, true, tarLayer(t, "etc/l", "l"))
	fromArchive := testImage(t, compression.GZip, false, tarLayer(t, "etc/x", "x"))
	work := t.TempDir()
	t.Chdir(work)
	lp, err := layout.Write("layout", empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(fromLayout, layout.WithAnnotations(map[string]string{refNameAnnotation: "2"})); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example.org/worker:2")
	if err := tarball.WriteToFile("img.tar", tag, fromArchive); err != nil {
		t.Fatal(err)
	}
	configDigest, _ := fromArchive.ConfigName()
	digest := digestOf(t, byDigest)
	want := map[string]string{ // digest -> the reference listed
		digest:                  host + "/test/d@" + digest,
		digestOf(t, fromLayout): "oci:" + filepath.Join(work, "layout") + ":2",
		configDigest.String():   "docker-archive:" + filepath.Join(work, "img.tar"),
	}

	root := t.TempDir()
	trees := &rootfs.Cache{Dir: root, DropSetID: true}
	dir := filepath.Join(root, "images")
	open := func(ref string, policy Policy) *rootfs.Ref {
		t.Helper()
		r, err := NewSource(mustParse(t, ref), Options{Dir: dir, Policy: policy}).Open(trees)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		return r
	}
	for _, ref := range []string{host + "/test/d@" + digest, "oci:layout:2", "docker-archive:img.tar"} {
		open(ref, PullMissing).Close()
	}
	list := func() map[string][]string {
		t.Helper()
		imgs, err := List(trees, dir)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]string{}
		for _, img := range imgs {
			got[img.Digest] = img.Refs
			if len(img.Refs) > 0 && img.Pulled.IsZero() {
				t.Errorf("%s: no time recorded", img.Refs)
			}
		}
		return got
	}
	got := list()
	for d, ref := range want {
		if !slices.Equal(got[d], []string{ref}) {
			t.Errorf("image %s is listed as %q, want %q", d, got[d], ref)
		}
	}

	// What is listed is what --image takes, from anywhere.
	t.Chdir(t.TempDir())
	records, _ := os.ReadDir(filepath.Join(dir, "refs"))
	for d, ref := range want {
		r := open(ref, PullNever)
		if r.Digest != d {
			t.Errorf("--image %s opens %s, want %s", ref, r.Digest, d)
		}
		r.Close()
	}
	if again, _ := os.ReadDir(filepath.Join(dir, "refs")); len(again) != len(records) || len(records) != 3 {
		t.Errorf("%d records, then %d after using them again; want 3 both times", len(records), len(again))
	}

	// A record lives as long as its image: the archive's, whose only
	// trace is its tree, is kept while the tree is in use.
	inUse := open(want[configDigest.String()], PullNever)
	p, err := Prune(trees, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Images) != 2 || len(p.Kept) != 1 || !slices.Equal(p.Kept[0].Refs, []string{want[configDigest.String()]}) {
		t.Errorf("Prune removed %d images and kept %+v; want 2 removed and the archive's kept, with its reference", len(p.Images), p.Kept)
	}
	if got := list(); len(got) != 1 || !slices.Equal(got[configDigest.String()], []string{want[configDigest.String()]}) {
		t.Errorf("after Prune, List = %v; want the archive's image, with its reference", got)
	}
	inUse.Close()
	if _, err := Prune(trees, dir); err != nil {
		t.Fatal(err)
	}
	if records, _ := os.ReadDir(filepath.Join(dir, "refs")); len(records) != 0 || len(list()) != 0 {
		t.Errorf("after the last Prune: %d records, List = %v; want none", len(records), list())
	}
}
