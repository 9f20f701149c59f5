package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// listedImage is what `mrtd images --json` prints of an image.
type listedImage struct {
	Digest    string   `json:"digest"`
	Refs      []string `json:"refs"`
	BlobBytes int64    `json:"blobBytes"`
	Complete  bool     `json:"complete"`
	Tree      string   `json:"tree"`
	TreeBytes int64    `json:"treeBytes"`
	InUse     bool     `json:"inUse"`
	UsedBy    []struct {
		Pid      int    `json:"pid"`
		Instance string `json:"instance"`
	} `json:"usedBy"`
}

// listImages runs `mrtd images --json` on d's cache.
func listImages(t *testing.T, e *mrtdtest.Env, d mrtdtest.Dirs) []listedImage {
	t.Helper()
	r := e.Run(t, d, "images", "--json", "--cache-dir", d.Cache, "--runtime-dir", d.Runtime)
	var imgs []listedImage
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &imgs) != nil {
		t.Fatalf("mrtd images --json: exit status %d, stdout %q, stderr %s", r.Code, r.Stdout, r.Stderr)
	}
	return imgs
}

// TestImageCache pulls the test image, lists it, and prunes it: kept while
// a pool uses it, removed once none does.
func TestImageCache(t *testing.T) {
	e := needIntegration(t)
	reg, _, m := pushTestImage(t, e)
	ref := reg.Ref("test/img:1")
	d := e.NewDirs(t)
	if r := e.Run(t, d, "pull", "--tls-verify=false", "--cache-dir", d.Cache, ref); r.Code != 0 {
		t.Fatalf("mrtd pull: exit status %d, stderr %s", r.Code, r.Stderr)
	}

	imgs := listImages(t, e, d)
	if len(imgs) != 1 || imgs[0].Digest != m.Digest || len(imgs[0].Refs) != 1 || imgs[0].Refs[0] != ref {
		t.Fatalf("after mrtd pull, mrtd images lists %+v, want %s as %s", imgs, ref, m.Digest)
	}
	if !imgs[0].Complete || imgs[0].BlobBytes <= 0 || imgs[0].Tree != "" || imgs[0].InUse {
		t.Errorf("a pulled image, never run, is listed as %+v: want complete blobs, no tree, not in use", imgs[0])
	}
	r := e.Run(t, d, "images", "--cache-dir", d.Cache)
	if r.Code != 0 || !strings.Contains(r.Stdout, ref) || !strings.Contains(r.Stdout, m.Digest[:len("sha256:")+12]) {
		t.Errorf("mrtd images: exit status %d, stdout %q; want a line with %s and its digest (stderr: %s)", r.Code, r.Stdout, ref, r.Stderr)
	}

	p := e.StartDaemon(t, d, "--runc", e.Runc, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime,
		"--stop-timeout", "3s", "--workers", "1", "--image", ref, "--tls-verify=false", "--", "pause")
	p.Running(t, 1)
	imgs = listImages(t, e, d)
	if len(imgs) != 1 || !imgs[0].InUse || imgs[0].Tree == "" || imgs[0].TreeBytes <= 0 {
		t.Fatalf("with a pool running it, mrtd images lists %+v, want the image in use, with its tree", imgs)
	}
	if u := imgs[0].UsedBy; len(u) != 1 || u[0].Pid != p.Pid || u[0].Instance != "mrtd" {
		t.Errorf("the image is used by %+v, want instance mrtd, pid %d", u, p.Pid)
	}

	r = e.Run(t, d, "prune", "--cache-dir", d.Cache, "--runtime-dir", d.Runtime)
	if r.Code != 0 || !strings.Contains(r.Stdout, "kept "+ref) || strings.Contains(r.Stdout, "removed "+ref) {
		t.Fatalf("mrtd prune with a pool using the image: exit status %d, stdout %q; want it kept (stderr: %s)", r.Code, r.Stdout, r.Stderr)
	}
	imgs = listImages(t, e, d)
	if len(imgs) != 1 || !imgs[0].Complete || imgs[0].Tree == "" {
		t.Fatalf("after mrtd prune, the image in use is listed as %+v, want its blobs and tree kept", imgs)
	}
	p.StopCleanly(t, d)

	r = e.Run(t, d, "prune", "--cache-dir", d.Cache, "--runtime-dir", d.Runtime)
	if r.Code != 0 || !strings.Contains(r.Stdout, "removed "+ref) || !strings.Contains(r.Stdout, "freed ") {
		t.Fatalf("mrtd prune with no pool left: exit status %d, stdout %q; want the image removed and the space freed (stderr: %s)", r.Code, r.Stdout, r.Stderr)
	}
	if imgs := listImages(t, e, d); len(imgs) != 0 {
		t.Errorf("after mrtd prune, mrtd images lists %+v, want none", imgs)
	}
	// Nothing of the image is left: no blob, no tree, no tag.
	for _, sub := range []string{"images/blobs/sha256", "images/refs"} {
		if ents, err := os.ReadDir(filepath.Join(d.Cache, sub)); err == nil && len(ents) != 0 {
			t.Errorf("%s holds %d entries after mrtd prune", sub, len(ents))
		}
	}
	trees, _ := filepath.Glob(filepath.Join(d.Cache, "rootfs", "image-*"))
	if len(trees) != 0 {
		t.Errorf("image trees are left after mrtd prune: %v", trees)
	}
	mrtdtest.AssertClean(t, d)
}
