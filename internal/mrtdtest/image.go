package mrtdtest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image is the test image written as an OCI image layout, built by the
// tests from the tiny rootfs's probe (nothing is downloaded). Its layers,
// applied in order, make:
//
//	layer 1: /bin/probe, /etc/passwd and /etc/group (root, and worker
//	         uid 1000), the mount points (/proc, /sys, /dev, /tmp, /run),
//	         /srv/orig "orig", /srv/gone "gone", /srv/replaced "v1",
//	         /opq/lower "lower"
//	layer 2: /srv/old "old"; /srv/.wh.gone (removes /srv/gone); /opq/new
//	         "new" then /opq/.wh..wh..opq (hides /opq/lower, not /opq/new);
//	         /srv/link, a hardlink to layer 1's /srv/orig; /srv/owned
//	         "owned", uid and gid 1000, mode 0640
//	layer 3: /srv/replaced "v3"
//
// Its config: Entrypoint ["/bin/probe"], Cmd ["echo", "from-image"],
// Env ["IMG_VAR=1", "PATH=/bin"], WorkingDir /srv, User 1000.
type Image struct {
	// Layout is the OCI image layout's directory.
	Layout string
	// Tag is the image's name in the layout (its ref.name annotation).
	Tag string
	// Digest is the image manifest's digest, sha256:HEX.
	Digest string
}

// The test image's config.
var (
	ImageEntrypoint = []string{"/bin/probe"}
	ImageCmd        = []string{"echo", "from-image"}
	ImageEnv        = []string{"IMG_VAR=1", "PATH=/bin"}
)

const (
	ImageWorkdir = "/srv"
	ImageUser    = "1000"
)

// Ref is the image as mrtd and skopeo name it: oci:DIR:TAG.
func (i Image) Ref() string { return "oci:" + i.Layout + ":" + i.Tag }

// imageEpoch is every entry's modification time: the layers are the same
// bytes at every build.
var imageEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// tarEntry is one entry of a layer; a Linkname makes a hardlink.
type tarEntry struct {
	name     string
	mode     int64
	body     string
	dir      bool
	linkname string
	uid, gid int
}

func file(name string, mode int64, body string) tarEntry {
	return tarEntry{name: name, mode: mode, body: body}
}

func dir(name string, mode int64) tarEntry { return tarEntry{name: name, mode: mode, dir: true} }

// layerTar packs entries into an uncompressed tar, in their order.
func layerTar(entries []tarEntry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: imageEpoch, Format: tar.FormatPAX}
		switch {
		case e.dir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, e.name+"/"
		case e.linkname != "":
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, e.linkname
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				return nil, err
			}
		}
	}
	err := tw.Close()
	return buf.Bytes(), err
}

// imageLayers are the test image's layers as tar entries; probe is the
// probe binary's content.
func imageLayers(probe []byte) [][]tarEntry {
	const passwd = "root:x:0:0:root:/root:/bin/probe\nworker:x:1000:1000:worker:/srv:/bin/probe\n"
	const group = "root:x:0:\nworker:x:1000:\n"
	return [][]tarEntry{
		{
			dir("bin", 0o755), file("bin/probe", 0o755, string(probe)),
			dir("etc", 0o755), file("etc/passwd", 0o644, passwd), file("etc/group", 0o644, group),
			dir("proc", 0o755), dir("sys", 0o755), dir("dev", 0o755), dir("run", 0o755), dir("tmp", 0o1777),
			dir("srv", 0o755), file("srv/orig", 0o644, "orig\n"), file("srv/gone", 0o644, "gone\n"),
			file("srv/replaced", 0o644, "v1\n"),
			dir("opq", 0o755), file("opq/lower", 0o644, "lower\n"),
		},
		{
			dir("srv", 0o755), file("srv/old", 0o644, "old\n"), file("srv/.wh.gone", 0o644, ""),
			// The opaque marker after an entry of its own layer: it hides
			// the lower layers' entries only.
			dir("opq", 0o755), file("opq/new", 0o644, "new\n"), file("opq/.wh..wh..opq", 0o644, ""),
			{name: "srv/link", linkname: "srv/orig"},
			{name: "srv/owned", mode: 0o640, body: "owned\n", uid: 1000, gid: 1000},
		},
		{
			dir("srv", 0o755), file("srv/replaced", 0o644, "v3\n"),
		},
	}
}

// BuildImage writes the test image (see Image) as an OCI image layout in
// dir, tagged tag, readable by the uid mrtd runs as.
func (e *Env) BuildImage(t testing.TB, dir, tag string) Image {
	t.Helper()
	probe, err := os.ReadFile(filepath.Join(e.Rootfs, "bin", "probe"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := buildImage(probe)
	if err != nil {
		t.Fatalf("building the test image: %v", err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatalf("writing the test image's layout: %v", err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	// The layout is root's when the tests run as root: let mrtd's uid read it.
	if err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		readable := os.FileMode(0o444)
		if fi.IsDir() {
			readable = 0o555
		}
		return os.Chmod(p, fi.Mode().Perm()|readable)
	}); err != nil {
		t.Fatal(err)
	}
	return Image{Layout: dir, Tag: tag, Digest: digest.String()}
}

func buildImage(probe []byte) (v1.Image, error) {
	var layers []v1.Layer
	for _, entries := range imageLayers(probe) {
		b, err := layerTar(entries)
		if err != nil {
			return nil, err
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	base, err := mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: imageEpoch},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: ImageEntrypoint,
			Cmd:        ImageCmd,
			Env:        ImageEnv,
			WorkingDir: ImageWorkdir,
			User:       ImageUser,
		},
	})
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(base, layers...)
}
