package image

import (
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/mrt-project/mrt/rootfs"
)

// TestSourceOpenTwice: the second Open of a Source, the tree through an
// id map, neither resolves nor fetches again, whatever the pull policy.
func TestSourceOpenTwice(t *testing.T) {
	isolate(t)
	var requests atomic.Int32
	host, _ := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			h.ServeHTTP(w, r)
		})
	})
	img := testImage(t, compression.GZip, true, tarLayer(t, "etc/a", "1"), tarLayer(t, "etc/b", "2"))
	push(t, host+"/test/img:1", img)
	dir := t.TempDir()
	src := NewSource(mustParse(t, host+"/test/img:1"), Options{Dir: filepath.Join(dir, "images"), Policy: PullAlways})

	plain := &rootfs.Cache{Dir: dir, DropSetID: true}
	pushed := requests.Load()
	r1, err := src.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	if requests.Load() == pushed {
		t.Fatal("the first Open made no request under pull policy always")
	}

	mapped := &rootfs.Cache{Dir: dir, DropSetID: true, IDMap: &rootfs.IDMap{
		UID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getuid()), Size: 1}},
		GID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getgid()), Size: 1}},
		Key: "k1",
	}}
	before := requests.Load()
	r2, err := src.Open(mapped)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if n := requests.Load() - before; n != 0 {
		t.Errorf("the second Open made %d requests, want none", n)
	}
	if r2.Path != mapped.ImagePath(digestOf(t, img)) || r2.Path == r1.Path || !r2.Extracted || r2.Digest != r1.Digest {
		t.Errorf("second Open = %+v, want a tree of its own at %s, of %s", r2, mapped.ImagePath(digestOf(t, img)), r1.Digest)
	}
	if data, err := os.ReadFile(filepath.Join(r2.Path, "etc", "b")); err != nil || string(data) != "2" {
		t.Errorf("etc/b = %q, %v", data, err)
	}
	if src.Config().Digest != digestOf(t, img) {
		t.Errorf("Config = %+v", src.Config())
	}
}
