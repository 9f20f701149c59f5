package main

// The image figures: `mrtd pull` and `mrtd run --image` against a
// docker-registry on 127.0.0.1 that bench starts.
//
//   - pull + flatten: into a fresh cache (runc already in it), `mrtd pull`
//     then `mrtd run --image REF -- /bin/true`, minus the median warm start
//     with --image, vs. `skopeo copy docker://REF oci:DIR:1` then `umoci
//     unpack --rootless --image DIR:1 BUNDLE`, alternating, each sample in a
//     new directory; the fetch and the flatten are also reported apart, for
//     information;
//   - warm start with --image vs. the same tree as --rootfs DIR, with the
//     registry stopped: a warm start needs no network, and does no work
//     that grows with the image.
//
// The test image is built here (nothing is downloaded): the rootfs archive
// (-archive) as its first layer, then two small layers with a whiteout, an
// opaque directory and a hardlink, so that both sides apply whiteouts. Its
// layers are gzip, as most published images' are.
//
// The figures need Debian's docker-registry, skopeo and umoci (`make
// bench-deps` installs them as root); without one of them they are skipped,
// with the reason.

import (
	"archive/tar"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/internal/mrtdtest"
	"github.com/mrt-project/mrt/rootfs"
)

var (
	imageFlag = flag.Bool("image", true, "measure the image figures (needs docker-registry, skopeo and umoci: make bench-deps)")
	imageOnly = flag.Bool("image-only", false, "measure only the image figures")
)

// imageRepoTag is the test image's name in bench's registry.
const imageRepoTag = "bench/img:1"

// imageBench is the image figures' state, for cleanup.
type imageBench struct {
	registry *mrtdtest.Registry
}

// imageTools returns the paths of docker-registry, skopeo and umoci, or
// why they cannot be used.
func imageTools() (umoci string, why string) {
	var missing []string
	for _, p := range []string{mrtdtest.RegistryBin, mrtdtest.SkopeoBin} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, filepath.Base(p))
		}
	}
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		missing = append(missing, "umoci")
	}
	if len(missing) > 0 {
		return "", fmt.Sprintf("no %v on this host (make bench-deps, as root, installs them)", missing)
	}
	return umoci, ""
}

// imageFigures measures the image figures. The warm-start setup must have
// run (b.runcCached).
func (b *bench) imageFigures() ([]row, []*samples, error) {
	umoci, why := imageTools()
	if why != "" {
		fmt.Fprintf(os.Stderr, "bench: image figures skipped: %s\n", why)
		return []row{
			{figure: "image pull + flatten", skip: why},
			{figure: "warm start --image vs dir", skip: why},
		}, nil, nil
	}
	ctx := context.Background()
	dir := filepath.Join(b.tmp, "image")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, nil, err
	}
	fmt.Fprintln(os.Stderr, "bench: image: building the test image, starting docker-registry, pushing ...")
	layoutDir := filepath.Join(dir, "layout")
	layers, err := b.writeTestImage(layoutDir)
	if err != nil {
		return nil, nil, fmt.Errorf("building the test image: %w", err)
	}
	b.img = &imageBench{}
	if b.img.registry, err = mrtdtest.StartRegistryIn(filepath.Join(dir, "registry")); err != nil {
		return nil, nil, err
	}
	policy, err := mrtdtest.WritePolicy(dir)
	if err != nil {
		return nil, nil, err
	}
	if err := b.img.registry.PushImage(ctx, policy, "oci:"+layoutDir+":1", imageRepoTag); err != nil {
		return nil, nil, err
	}
	ref := b.img.registry.Ref(imageRepoTag)
	blobs := treeSize(filepath.Join(layoutDir, "blobs"))

	// 1. Pull + flatten vs. skopeo copy + umoci unpack.
	fmt.Fprintln(os.Stderr, "bench: image: pull + flatten vs. skopeo copy + umoci unpack ...")
	pull := &samples{name: "mrtd pull (fresh cache)"}
	runCold := &samples{name: "mrtd run --image, after the pull"}
	total := &samples{name: "mrtd pull + mrtd run --image"}
	logged := &samples{name: "mrtd's logged flatten duration"}
	copyS := &samples{name: "skopeo copy docker:// oci:"}
	unpack := &samples{name: "umoci unpack --rootless"}
	floor := &samples{name: "skopeo copy + umoci unpack"}
	fresh, done, _ := b.freshDirs(dir, "cold", 2*(blobs+treeSize(b.rootfsMain)))
	imageArgs := []string{"--image", ref, "--tls-verify=false"}
	err = interleave(1, *coldN,
		series2(total, func() (time.Duration, error) {
			d, err := fresh()
			if err != nil {
				return 0, err
			}
			defer done(d)
			cache := filepath.Join(d, "cache")
			if err := os.Mkdir(cache, 0o711); err != nil {
				return 0, err
			}
			if err := os.Link(b.runcCached, filepath.Join(cache, filepath.Base(b.runcCached))); err != nil {
				return 0, err
			}
			tp, err := b.timeCmd(b.mrtd, "pull", "--cache-dir", cache, "--tls-verify=false", ref)
			if err != nil {
				return 0, err
			}
			tr, err := b.mrtdRun(cache, imageArgs...)
			if err != nil {
				return 0, err
			}
			if ld, ok := b.loggedDuration("image flattened"); ok {
				logged.add(ld)
			}
			pull.add(tp)
			runCold.add(tr)
			return tp + tr, nil
		}),
		series2(floor, func() (time.Duration, error) {
			d, err := fresh()
			if err != nil {
				return 0, err
			}
			defer done(d)
			oci := filepath.Join(d, "oci")
			tc, err := b.timeCmd(mrtdtest.SkopeoBin, "--policy", policy, "copy", "--quiet", "--src-tls-verify=false",
				"docker://"+ref, "oci:"+oci+":1")
			if err != nil {
				return 0, err
			}
			tu, err := b.timeCmd(umoci, "unpack", "--rootless", "--image", oci+":1", filepath.Join(d, "bundle"))
			if err != nil {
				return 0, err
			}
			copyS.add(tc)
			unpack.add(tu)
			return tc + tu, nil
		}),
	)
	if err != nil {
		return nil, nil, err
	}
	// The warm-up round added to the component series too.
	for _, s := range []*samples{pull, runCold, logged, copyS, unpack} {
		if len(s.d) > *coldN {
			s.d = s.d[len(s.d)-*coldN:]
		}
	}

	// 2. Warm start with --image vs. the same tree as a directory, with
	// the registry stopped.
	fmt.Fprintln(os.Stderr, "bench: image: warm start --image vs. --rootfs DIR (registry stopped) ...")
	cacheImage := filepath.Join(dir, "cache-image")
	cacheDir := filepath.Join(dir, "cache-image-dirmode")
	for _, c := range []string{cacheImage, cacheDir} {
		if err := os.Mkdir(c, 0o711); err != nil {
			return nil, nil, err
		}
		if err := os.Link(b.runcCached, filepath.Join(c, filepath.Base(b.runcCached))); err != nil {
			return nil, nil, err
		}
	}
	if _, err := b.mrtdRun(cacheImage, imageArgs...); err != nil {
		return nil, nil, err
	}
	tree, err := onlyTree(filepath.Join(cacheImage, "rootfs"))
	if err != nil {
		return nil, nil, err
	}
	b.img.registry.Stop()
	warmImage := &samples{name: "mrtd run --image (warm, no registry)"}
	warmDir := &samples{name: "mrtd run --rootfs DIR (the image's tree)"}
	err = interleave(*warmup, *n,
		series2(warmImage, func() (time.Duration, error) { return b.mrtdRun(cacheImage, imageArgs...) }),
		series2(warmDir, func() (time.Duration, error) { return b.mrtdRun(cacheDir, "--rootfs", tree) }),
	)
	if err != nil {
		return nil, nil, err
	}

	what := fmt.Sprintf("%d layers, %s gzip", len(layers), mb(blobs))
	rows := []row{
		{
			figure: "image pull + flatten (" + what + ")", value: total.median() - warmImage.median(),
			floor: floor.median(), floorWhat: "skopeo copy + umoci unpack",
			target: 1.5, targetText: "<= 1.5x",
		},
		{
			figure: "image fetch (mrtd pull)", value: pull.median(),
			floor: copyS.median(), floorWhat: "skopeo copy to oci:",
			targetText: "(info)",
		},
		{
			figure: "image flatten (run - warm run)", value: runCold.median() - warmImage.median(),
			floor: unpack.median(), floorWhat: "umoci unpack --rootless",
			targetText: "(info)",
		},
	}
	if len(logged.d) > 0 {
		rows = append(rows, row{
			figure: "image flatten (mrtd's log)", value: logged.median(),
			floor: unpack.median(), floorWhat: "umoci unpack --rootless",
			targetText: "(info)",
		})
	}
	rows = append(rows, row{
		figure: fmt.Sprintf("warm start --image (%s) vs dir", mb(treeSize(tree))), value: warmImage.median(),
		floor: warmDir.median(), floorWhat: "--rootfs DIR, same tree",
		target: 1.1, targetText: "~1.00x",
	})
	return rows, []*samples{total, pull, runCold, logged, floor, copyS, unpack, warmImage, warmDir}, nil
}

// freshDirs returns a function making a new directory under parent per
// sample, and one to call when the sample is done. As the cold figures',
// the directories are kept until the work directory goes (see cold),
// unless the disk is short of room for about perSample bytes per run:
// then keep is false, and done removes the sample's directory.
func (b *bench) freshDirs(parent, prefix string, perSample int64) (fresh func() (string, error), done func(string), keep bool) {
	keep = true
	var st unix.Statfs_t
	need := uint64(2*(*coldN+1)) * uint64(perSample) * 5 / 4
	if err := unix.Statfs(parent, &st); err == nil && st.Bavail*uint64(st.Bsize) < need+(1<<30) {
		keep = false
		fmt.Printf("note: not enough room to keep the %s samples' trees (%s needed): removing each after its run\n\n", filepath.Base(parent), mb(int64(need)))
	}
	seq := 0
	fresh = func() (string, error) {
		seq++
		d := filepath.Join(parent, fmt.Sprintf("%s-%d", prefix, seq))
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
		return d, os.Chmod(d, 0o755)
	}
	done = func(d string) {
		if !keep {
			rootfs.RemoveTree(d)
		}
	}
	return fresh, done, keep
}

// writeTestImage writes the test image as an OCI layout at dir, tagged 1,
// and returns its layers.
func (b *bench) writeTestImage(dir string) ([]v1.Layer, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, "..", "layer-rootfs.tar.gz")
	if err := gzipArchive(b.archive, base); err != nil {
		return nil, err
	}
	l1, err := tarball.LayerFromFile(base, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	layers := []v1.Layer{l1}
	for _, entries := range smallLayers() {
		data, err := gzipTar(entries)
		if err != nil {
			return nil, err
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: time.Unix(0, 0).UTC()},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Cmd: []string{"/bin/true"},
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
	})
	if err != nil {
		return nil, err
	}
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		return nil, err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, err
	}
	return layers, p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "1"}))
}

// gzipArchive recompresses a .tar.zst as a .tar.gz.
func gzipArchive(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	zr, err := zstd.NewReader(in)
	if err != nil {
		return err
	}
	defer zr.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	gw := gzip.NewWriter(out)
	if _, err := io.Copy(gw, zr); err != nil {
		return err
	}
	if err := gw.Close(); err != nil {
		return err
	}
	return out.Close()
}

// smallLayers are the test image's layers over the rootfs: a whiteout of a
// file of the rootfs, files and a hardlink, then an opaque directory
// hiding them and a replaced file.
func smallLayers() [][]*tar.Header {
	mtime := time.Unix(0, 0)
	dir := func(name string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}
	}
	file := func(name string, size int64) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: mtime, Format: tar.FormatPAX}
	}
	link := func(name, target string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: mtime, Format: tar.FormatPAX}
	}
	return [][]*tar.Header{
		{
			dir("etc"), file("etc/.wh.motd", 0),
			dir("opt"), dir("opt/bench"), file("opt/bench/data", 256<<10), link("opt/bench/link", "opt/bench/data"),
			dir("srv"), file("srv/replaced", 4<<10),
		},
		{
			dir("opt"), dir("opt/bench"), file("opt/bench/.wh..wh..opq", 0), file("opt/bench/new", 64<<10),
			dir("srv"), file("srv/replaced", 8<<10),
		},
	}
}

// gzipTar packs headers into a gzip tar; regular files get Size bytes of
// a repeating pattern.
func gzipTar(hdrs []*tar.Header) ([]byte, error) {
	var buf bytes.Buffer
	gw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gw)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if _, err := tw.Write(bytes.Repeat([]byte("mrtd-bench\n"), int(h.Size)/11+1)[:h.Size]); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
