package image

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"

	"github.com/mrt-project/mrt/rootfs"
)

func TestSourceOpen(t *testing.T) {
	isolate(t)
	host, srv := testRegistry(t, nil)
	img := testImage(t, compression.ZStd, true, tarLayer(t, "etc/a", "1"), tarLayer(t, "etc/b", "2"))
	push(t, host+"/test/img:1", img)
	dir := t.TempDir()
	cache := &rootfs.Cache{Dir: dir, DropSetID: true}
	opts := Options{Dir: filepath.Join(dir, "images")}
	ref := mustParse(t, host+"/test/img:1")

	src := NewSource(ref, opts)
	if src.String() != ref.String() {
		t.Errorf("String = %s", src)
	}
	var _ rootfs.Source = src
	r, err := src.Open(cache)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if data, err := os.ReadFile(filepath.Join(r.Path, "etc", "b")); err != nil || string(data) != "2" {
		t.Errorf("etc/b = %q, %v", data, err)
	}
	c := src.Config()
	if c.Digest != digestOf(t, img) || !slices.Equal(c.Entrypoint, []string{"/bin/worker"}) {
		t.Errorf("Config = %+v", c)
	}

	// With the registry gone, the cached tag starts the same tree.
	srv.Close()
	src = NewSource(ref, opts)
	r2, err := src.Open(cache)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.Path != r.Path || r2.Extracted {
		t.Errorf("second Open: %+v, want %s again, not extracted", r2, r.Path)
	}
	if src.Config().WorkingDir != "/work" {
		t.Errorf("Config = %+v", src.Config())
	}
}
