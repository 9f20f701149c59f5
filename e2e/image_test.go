package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// The image tests run mrtd --image against a real registry on 127.0.0.1
// (Debian's docker-registry) holding the test image (mrtdtest.Image),
// which the tests build and push with skopeo. `make e2e` runs them; they
// skip without MRTD_E2E_REGISTRY=1.

// imageRun runs `mrtd run --image ref` with flags, and cmd after -- when
// given.
func imageRun(t *testing.T, e *mrtdtest.Env, d mrtdtest.Dirs, ref string, flags []string, cmd ...string) mrtdtest.Result {
	t.Helper()
	args := []string{"run", "--runc", e.Runc, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--image", ref, "--tls-verify=false"}
	args = append(args, flags...)
	if len(cmd) > 0 {
		args = append(append(args, "--"), cmd...)
	}
	return e.Run(t, d, args...)
}

// wantOutput fails t unless r exited 0 with stdout want.
func wantOutput(t *testing.T, r mrtdtest.Result, want string) {
	t.Helper()
	if r.Code != 0 || r.Stdout != want {
		t.Fatalf("exit status %d, stdout %q, want 0 and %q (stderr: %s)", r.Code, r.Stdout, want, r.Stderr)
	}
}

// userLines counts the lines of log that tell which image USER (1000)
// runs as container root.
func userLines(log string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(strings.ToLower(line), "user") && strings.Contains(line, mrtdtest.ImageUser) {
			n++
		}
	}
	return n
}

// pushTestImage builds the test image, starts a registry and pushes the
// image to it as test/img:1 (as built: OCI, gzip layers).
func pushTestImage(t *testing.T, e *mrtdtest.Env) (*mrtdtest.Registry, mrtdtest.Image, mrtdtest.Manifest) {
	t.Helper()
	mrtdtest.NeedRegistry(t)
	img := e.BuildImage(t, e.UserDir(t, "layout"), "1")
	reg := mrtdtest.StartRegistry(t)
	m := reg.Push(t, img.Ref(), "test/img:1")
	if m.Digest != img.Digest || len(m.Layers) != 3 {
		t.Fatalf("pushed test/img:1 has digest %s and %d layers, want %s as built and 3", m.Digest, len(m.Layers), img.Digest)
	}
	return reg, img, m
}

func TestImageFromRegistry(t *testing.T) {
	e := needIntegration(t)
	reg, img, m := pushTestImage(t, e)
	zstd := "oci:" + e.UserDir(t, "layout-zstd") + ":1"
	mrtdtest.CopyImage(t, img.Ref(), zstd, "--dest-compress-format", "zstd")
	mz := reg.Push(t, zstd, "test/img:zstd", "--preserve-digests")
	for _, l := range mz.Layers {
		if !strings.HasSuffix(l.MediaType, "+zstd") {
			t.Fatalf("test/img:zstd has a layer %s of type %s, want zstd", l.Digest, l.MediaType)
		}
	}
	m2 := reg.Push(t, img.Ref(), "test/img:v2s2", "--format", "v2s2")
	if m2.MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Fatalf("test/img:v2s2 is a %q, want Docker schema2", m2.MediaType)
	}
	for _, l := range m2.Layers {
		if l.MediaType != "application/vnd.docker.image.rootfs.diff.tar.gzip" {
			t.Fatalf("test/img:v2s2 has a layer %s of type %s, want Docker's gzip layer", l.Digest, l.MediaType)
		}
	}
	ref := reg.Ref("test/img:1")
	d := e.NewDirs(t)

	t.Run("entrypoint and cmd", func(t *testing.T) {
		r := imageRun(t, e, d, ref, nil)
		wantOutput(t, r, "from-image\n")
		if n := userLines(r.Stderr); n != 1 {
			t.Errorf("%d lines say the image's USER %s runs as container root, want 1:\n%s", n, mrtdtest.ImageUser, r.Stderr)
		}
	})
	t.Run("command replaces cmd", func(t *testing.T) {
		// The Entrypoint stays: /bin/probe echo other (the image has no
		// echo of its own).
		wantOutput(t, imageRun(t, e, d, ref, nil, "echo", "other"), "other\n")
	})
	t.Run("env", func(t *testing.T) {
		r := imageRun(t, e, d, ref, nil, "cat", "/proc/self/environ")
		env := strings.Split(strings.TrimRight(r.Stdout, "\x00"), "\x00")
		for _, kv := range mrtdtest.ImageEnv {
			if !slices.Contains(env, kv) {
				t.Errorf("the container's environment %q lacks the image's %s (stderr: %s)", env, kv, r.Stderr)
			}
		}
		r = imageRun(t, e, d, ref, []string{"--env", "IMG_VAR=2"}, "cat", "/proc/self/environ")
		env = strings.Split(strings.TrimRight(r.Stdout, "\x00"), "\x00")
		if !slices.Contains(env, "IMG_VAR=2") || slices.Contains(env, "IMG_VAR=1") {
			t.Errorf("with --env IMG_VAR=2 the environment is %q: --env must win over the image's (stderr: %s)", env, r.Stderr)
		}
	})
	t.Run("workdir", func(t *testing.T) {
		wantOutput(t, imageRun(t, e, d, ref, nil, "pwd"), mrtdtest.ImageWorkdir+"\n")
		wantOutput(t, imageRun(t, e, d, ref, []string{"--workdir", "/etc"}, "pwd"), "/etc\n")
	})
	t.Run("layers", func(t *testing.T) {
		checkImageTree(t, e, d, ref)
	})
	t.Run("pull prints the digest", func(t *testing.T) {
		pd := e.NewDirs(t)
		r := e.Run(t, pd, "pull", "--tls-verify=false", "--cache-dir", pd.Cache, ref)
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != m.Digest {
			t.Fatalf("mrtd pull: exit status %d, stdout %q, want 0 and %s (stderr: %s)", r.Code, r.Stdout, m.Digest, r.Stderr)
		}
	})
	t.Run("zstd", func(t *testing.T) {
		wantOutput(t, imageRun(t, e, d, reg.Ref("test/img:zstd"), nil), "from-image\n")
		wantOutput(t, imageRun(t, e, d, reg.Ref("test/img:zstd"), nil, "cat", "/srv/replaced"), "v3\n")
	})
	t.Run("schema2", func(t *testing.T) {
		wantOutput(t, imageRun(t, e, d, reg.Ref("test/img:v2s2"), nil), "from-image\n")
		wantOutput(t, imageRun(t, e, d, reg.Ref("test/img:v2s2"), nil, "cat", "/srv/link"), "orig\n")
	})
	t.Run("pool", func(t *testing.T) {
		pd := e.NewDirs(t)
		p := e.StartDaemon(t, pd, "--runc", e.Runc, "--cache-dir", pd.Cache, "--runtime-dir", pd.Runtime,
			"--stop-timeout", "3s", "--workers", "2", "--image", ref, "--tls-verify=false", "--", "pause")
		p.Running(t, 2)
		p.Ready(t, 2)
		if st := p.Snapshot(); st.Running() != 2 {
			t.Fatalf("%d workers run, want 2:\n%s", st.Running(), p.Log())
		}
		if n := userLines(p.Log()); n != 1 {
			t.Errorf("%d lines say the image's USER %s runs as container root, want 1:\n%s", n, mrtdtest.ImageUser, p.Log())
		}
		p.StopCleanly(t, pd)
	})

	// The tag was resolved once: with the registry gone, a start that may
	// use the cache still works, and one that must not fails.
	reg.Stop()
	t.Run("registry stopped", func(t *testing.T) {
		wantOutput(t, imageRun(t, e, d, ref, nil), "from-image\n")
		wantOutput(t, imageRun(t, e, d, ref, []string{"--pull", "never"}, "echo", "never"), "never\n")
		r := imageRun(t, e, d, ref, []string{"--pull", "always"})
		if lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); r.Code == 0 || len(lines) != 1 || lines[0] == "" {
			t.Fatalf("--pull always with the registry stopped: exit status %d, stderr %q; want a failure told in one line", r.Code, r.Stderr)
		}
		if r.Stdout != "" {
			t.Errorf("--pull always with the registry stopped ran the container: stdout %q", r.Stdout)
		}
	})
	mrtdtest.AssertClean(t, d)
}

// checkImageTree checks, from inside a container of ref, the tree the
// test image's layers make (see mrtdtest.Image).
func checkImageTree(t *testing.T, e *mrtdtest.Env, d mrtdtest.Dirs, ref string) {
	t.Helper()
	// Whiteouts remove and are not seen; the opaque directory hides the
	// lower layer's entries, not its own layer's.
	wantOutput(t, imageRun(t, e, d, ref, nil, "ls", "/srv"), "link\nold\norig\nowned\nreplaced\n")
	wantOutput(t, imageRun(t, e, d, ref, nil, "ls", "/opq"), "new\n")
	wantOutput(t, imageRun(t, e, d, ref, nil, "cat", "/srv/replaced"), "v3\n")
	wantOutput(t, imageRun(t, e, d, ref, nil, "cat", "/srv/old"), "old\n")
	// A hardlink to a file of a lower layer: the same file.
	wantOutput(t, imageRun(t, e, d, ref, nil, "cat", "/srv/link"), "orig\n")
	r := imageRun(t, e, d, ref, nil, "stat", "/srv/orig", "/srv/link")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	ino := regexp.MustCompile(`nlink=(\d+) ino=(\d+)`)
	if len(lines) != 2 {
		t.Fatalf("stat /srv/orig /srv/link: %q (stderr: %s)", r.Stdout, r.Stderr)
	}
	a, b := ino.FindStringSubmatch(lines[0]), ino.FindStringSubmatch(lines[1])
	if a == nil || b == nil || a[2] != b[2] {
		t.Errorf("/srv/link is not a hardlink of /srv/orig:\n%s", r.Stdout)
	}
	// The uid-1000 file, mode 0640: readable by the image's user, which
	// runs as container root.
	wantOutput(t, imageRun(t, e, d, ref, nil, "cat", "/srv/owned"), "owned\n")
	r = imageRun(t, e, d, ref, nil, "stat", "/srv/owned")
	if !strings.Contains(r.Stdout, "mode=0640") {
		t.Errorf("stat /srv/owned: %q, want mode 0640 (stderr: %s)", r.Stdout, r.Stderr)
	}
}

func TestImageFromLayout(t *testing.T) {
	e := needIntegration(t)
	mrtdtest.NeedRegistry(t)
	img := e.BuildImage(t, e.UserDir(t, "layout"), "1")
	d := e.NewDirs(t)
	t.Run("oci layout", func(t *testing.T) {
		wantOutput(t, imageRun(t, e, d, img.Ref(), nil), "from-image\n")
		checkImageTree(t, e, d, img.Ref())
	})
	t.Run("docker archive", func(t *testing.T) {
		archive := filepath.Join(e.UserDir(t, "archive"), "img.tar")
		mrtdtest.CopyImage(t, img.Ref(), "docker-archive:"+archive+":test/img:1")
		if err := os.Chmod(archive, 0o644); err != nil {
			t.Fatal(err)
		}
		wantOutput(t, imageRun(t, e, d, "docker-archive:"+archive, nil), "from-image\n")
		wantOutput(t, imageRun(t, e, d, "docker-archive:"+archive, nil, "cat", "/srv/replaced"), "v3\n")
		// mrtd images names both by what --image takes.
		var refs []string
		for _, img := range listImages(t, e, d) {
			refs = append(refs, img.Refs...)
		}
		for _, want := range []string{img.Ref(), "docker-archive:" + archive} {
			if !slices.Contains(refs, want) {
				t.Errorf("mrtd images lists %q, want %s among them", refs, want)
			}
		}
	})
	mrtdtest.AssertClean(t, d)
}

func TestImageCorruptLayerIsRefused(t *testing.T) {
	e := needIntegration(t)
	reg, _, m := pushTestImage(t, e)
	// The first layer, the probe's: without it there is no tree.
	layer := m.Layers[0]
	path := reg.BlobPath(layer.Digest)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the layer's blob in the registry's storage: %v", err)
	}
	if int64(len(b)) != layer.Size {
		t.Fatalf("%s holds %d bytes, the manifest says %d", path, len(b), layer.Size)
	}
	corrupt := bytes.Clone(b)
	for i := range corrupt {
		corrupt[i] ^= 0xff
	}
	if err := os.WriteFile(path, corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	hex := strings.TrimPrefix(layer.Digest, "sha256:")
	d := e.NewDirs(t)
	for _, args := range [][]string{
		{"run", "--runc", e.Runc, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--image", reg.Ref("test/img:1"), "--tls-verify=false"},
		{"pull", "--tls-verify=false", "--cache-dir", d.Cache, reg.Ref("test/img:1")},
	} {
		r := e.Run(t, d, args...)
		// The error, mrtd's last line, names the layer: the log lines
		// before it may name it too.
		lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
		if r.Code == 0 || !strings.Contains(lines[len(lines)-1], hex) {
			t.Errorf("mrtd %s with layer %s corrupted: exit status %d, stderr %q; want a failure whose last line names the layer's digest",
				args[0], layer.Digest, r.Code, r.Stderr)
		}
		if r.Stdout != "" {
			t.Errorf("mrtd %s with a corrupted layer printed %q", args[0], r.Stdout)
		}
	}
	// Nothing of the layer is kept: no file named by its digest, and no
	// extracted tree. The blobs fetched whole are kept, for the next pull:
	// finding one says the walk looks where mrtd keeps blobs.
	others := []string{m.Config.Digest}
	for _, l := range m.Layers[1:] {
		others = append(others, l.Digest)
	}
	kept := 0
	err = filepath.WalkDir(d.Cache, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(d.Cache, p)
		// A temporary file may carry a short form of the digest.
		if strings.Contains(de.Name(), hex[:12]) {
			t.Errorf("the corrupted layer is kept in the cache: %s", rel)
		}
		if strings.HasSuffix(p, "/bin/probe") || strings.HasSuffix(p, "/srv/orig") {
			t.Errorf("a tree of the corrupted layer is in the cache: %s", rel)
		}
		for _, o := range others {
			if de.Type().IsRegular() && strings.Contains(de.Name(), strings.TrimPrefix(o, "sha256:")) {
				kept++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if kept == 0 {
		t.Errorf("no blob of the image (%v) is in the cache %s: the test does not look where mrtd keeps them", others, d.Cache)
	}
	mrtdtest.AssertClean(t, d)
}
