package e2e

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// archiveRootfs packs the test rootfs (which has no /var) into a tar.zst,
// for mrtd to extract into its cache.
func archiveRootfs(t *testing.T, e *mrtdtest.Env) string {
	t.Helper()
	archive := filepath.Join(e.UserDir(t, "img"), "img.tar.zst")
	mrtdtest.WriteTarZst(t, e.Rootfs, archive)
	return archive
}

// cachedTree is the one tree extracted in d's cache.
func cachedTree(t *testing.T, d mrtdtest.Dirs) string {
	t.Helper()
	trees, _ := filepath.Glob(filepath.Join(d.Cache, "rootfs", strings.Repeat("[0-9a-f]", 64)))
	if len(trees) != 1 {
		t.Fatalf("cache holds trees %v, want one", trees)
	}
	return trees[0]
}

// wantUsage fails t unless r is a usage error: status 2 and one line of
// stderr holding want.
func wantUsage(t *testing.T, r mrtdtest.Result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	if r.Code != 2 || len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Fatalf("status %d stderr %q; want 2 and one line containing %q", r.Code, r.Stderr, want)
	}
}

// TestTmpfs: --tmpfs DST is a writable tmpfs, its mount point created in
// a tree mrtd extracted; /var/tmp is one by default.
func TestTmpfs(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	archive := archiveRootfs(t, e)
	run := func(flags []string, cmd ...string) mrtdtest.Result {
		args := append([]string{"run", "--runc", e.Runc, "--rootfs", archive, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime}, flags...)
		return e.Run(t, d, append(append(args, "--", "/bin/probe"), cmd...)...)
	}
	for i := 0; i < 2; i++ { // created, then found
		r := run([]string{"--tmpfs", "/data:size=1m", "--tmpfs", "/cache/sub:mode=700,noexec"},
			"write", "/data/f", "/var/tmp/f", "/tmp/f", "/cache/sub/f", "/srv/f")
		if r.Code != 0 || !strings.HasPrefix(r.Stdout, "ok\nok\nok\nok\nerror:") || !strings.Contains(r.Stdout, "read-only file system") {
			t.Fatalf("run %d: status %d stdout %q stderr %q; want /data, /var/tmp, /tmp and /cache/sub writable, /srv not", i, r.Code, r.Stdout, r.Stderr)
		}
	}
	r := run([]string{"--tmpfs", "/data", "--tmpfs", "/cache/sub:mode=700"}, "stat", "/data", "/var/tmp", "/cache/sub")
	for _, want := range []string{"/data mode=1777 ", "/var/tmp mode=1777 ", "/cache/sub mode=0700 "} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("stat: %q lacks %q (stderr %q)", r.Stdout, want, r.Stderr)
		}
	}
	// The mount points, in the cache's tree, are empty directories of
	// mrtd's user: the tmpfs went to the container, not the tree.
	tree := cachedTree(t, d)
	for _, p := range []string{"data", "var/tmp", "cache/sub"} {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(tree, p), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR || int(st.Uid) != e.UID || st.Mode&0o022 != 0 {
			t.Errorf("mount point /%s in the tree: %+v, %v; want a directory of uid %d without group or other write", p, st, err, e.UID)
		}
		if ents, _ := os.ReadDir(filepath.Join(tree, p)); len(ents) != 0 {
			t.Errorf("mount point /%s holds %v", p, ents)
		}
	}

	wantUsage(t, run([]string{"--tmpfs", "/data:size=lots"}, "echo"), `--tmpfs "/data:size=lots": bad option`)
	wantUsage(t, run([]string{"--tmpfs", "/data:exec"}, "echo"), "unknown option")
	wantUsage(t, run([]string{"--tmpfs", "/etc/not-executable"}, "echo"), "is a file in the rootfs")
	mrtdtest.AssertClean(t, d)
}

// TestTmpfsRootfsDir: a user's own --rootfs DIR is used as it is: a --tmpfs
// on a directory it has works, one on a directory it lacks is a usage
// error, and /var/tmp, which it lacks, is left out.
func TestTmpfsRootfsDir(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	r := e.Run(t, d, e.RunArgs(d, "--tmpfs", "/srv", "--", "/bin/probe", "write", "/srv/f")...)
	if r.Code != 0 || r.Stdout != "ok\n" {
		t.Fatalf("--tmpfs /srv: status %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	r = e.Run(t, d, e.RunArgs(d, "--", "/bin/probe", "ls", "/")...)
	if r.Code != 0 || strings.Contains(r.Stdout, "var") {
		t.Fatalf("ls /: status %d stdout %q stderr %q; want no /var", r.Code, r.Stdout, r.Stderr)
	}
	wantUsage(t, e.Run(t, d, e.RunArgs(d, "--tmpfs", "/data", "--", "/bin/probe", "echo")...),
		"--tmpfs /data: /data does not exist in the rootfs")
	if _, err := os.Lstat(filepath.Join(e.Rootfs, "data")); err == nil {
		t.Error("mrtd created /data in a --rootfs DIR")
	}
	mrtdtest.AssertClean(t, d)
}

// TestMountPointCreated: a --mount destination missing from a tree mrtd
// extracted is created there (a directory for a directory, a file for a
// file); in a --rootfs DIR it stays a usage error.
func TestMountPointCreated(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	archive := archiveRootfs(t, e)
	shared := e.UserDir(t, "shared")
	if err := os.WriteFile(filepath.Join(shared, "job"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(shared, "job"), e.UID, e.GID)
	args := e.DaemonArgs(d, "--rootfs", archive, "--workers", "1",
		"--mount", shared+":/jobs/in", "--mount", filepath.Join(shared, "job")+":/etc/job:ro", "--tmpfs", "/scratch",
		"--", "/bin/probe", "cat", "/jobs/in/job")
	p := e.StartDaemon(t, d, args...)
	ev := p.Next(t, "output")
	if ev["line"] != "from the host" || ev["stream"] != "stdout" {
		t.Fatalf("output event %v", ev)
	}
	p.Terminate(t)
	tree := cachedTree(t, d)
	for p, dir := range map[string]bool{"jobs/in": true, "etc/job": false, "scratch": true} {
		fi, err := os.Lstat(filepath.Join(tree, p))
		if err != nil || fi.IsDir() != dir || (!dir && fi.Size() != 0) {
			t.Errorf("mount point /%s in the tree: %v, %v; want an empty %s", p, fi, err, map[bool]string{true: "directory", false: "file"}[dir])
		}
	}
	// The file bind works too.
	r := e.Run(t, d, "run", "--runc", e.Runc, "--rootfs", archive, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime,
		"--", "/bin/probe", "stat", "/etc/job")
	if r.Code != 0 || !strings.Contains(r.Stdout, "/etc/job mode=0644") || !strings.Contains(r.Stdout, "size=0") {
		t.Errorf("the file mount point seen without its mount: %q %q", r.Stdout, r.Stderr)
	}

	// The same with the rootfs directory itself: a usage error, and the
	// directory unchanged.
	before, _ := os.ReadDir(e.Rootfs)
	r = e.Run(t, d, e.DaemonArgs(d, "--workers", "1", "--mount", shared+":/jobs/in", "--", "/bin/probe", "cat", "/jobs/in/job")...)
	wantUsage(t, r, "/jobs/in does not exist in the rootfs")
	after, _ := os.ReadDir(e.Rootfs)
	if !slices.EqualFunc(before, after, func(a, b os.DirEntry) bool { return a.Name() == b.Name() }) {
		t.Errorf("the --rootfs DIR changed: %v, then %v", before, after)
	}
	mrtdtest.AssertClean(t, d)
}

// imageWithConfig adds to the test image's layout the image tagged tag:
// the test image with STOPSIGNAL sig and labels.
func imageWithConfig(t *testing.T, img mrtdtest.Image, tag, sig string, labels map[string]string) string {
	t.Helper()
	lp, err := layout.FromPath(img.Layout)
	if err != nil {
		t.Fatal(err)
	}
	h, err := v1.NewHash(img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	base, err := lp.Image(h)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.StopSignal, cf.Config.Labels = sig, labels
	changed, err := mutate.ConfigFile(base, cf)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(changed, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return "oci:" + img.Layout + ":" + tag
}

// TestImageStopSignalAndLabels: the image's STOPSIGNAL stops the workers
// unless --stop-signal is given; its labels are in mrtd status --json.
func TestImageStopSignalAndLabels(t *testing.T) {
	e := needIntegration(t)
	mrtdtest.NeedRegistry(t)
	img := e.BuildImage(t, e.UserDir(t, "layout"), "1")
	labels := map[string]string{"org.opencontainers.image.title": "worker", "team": "preservation"}
	ref := imageWithConfig(t, img, "signals", "SIGINT", labels)
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"the image's", nil, "got interrupt"},
		{"--stop-signal", []string{"--stop-signal", "TERM"}, "got terminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.NewDirs(t)
			args := []string{"--runc", e.Runc, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--stop-timeout", "10s",
				"--image", ref, "--workers", "1"}
			p := e.StartDaemon(t, d, append(append(args, tc.flags...), "--", "pause")...)
			if ev := p.Next(t, "output"); ev["line"] != "ready" {
				t.Fatalf("output event %v", ev)
			}
			if got := statusJSON(t, e, d).Labels; !maps.Equal(got, labels) {
				t.Errorf("status --json labels = %v, want %v", got, labels)
			}
			if code := p.Terminate(t); code != 0 {
				t.Fatalf("mrtd exited %d:\n%s", code, p.Log())
			}
			if !strings.Contains(p.Log(), tc.want) {
				t.Errorf("the worker did not say %q when stopped:\n%s", tc.want, p.Log())
			}
			mrtdtest.AssertClean(t, d)
		})
	}
}
