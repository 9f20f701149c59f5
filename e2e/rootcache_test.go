package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// TestRootCache checks that, as root, what root's containers execute (the
// extracted rootfs and runc, in the cache) can be changed by no other host
// uid, not even the unprivileged one container root maps to, which may still
// read and run it.
func TestRootCache(t *testing.T) {
	e := needIntegration(t)
	if !e.Dropped {
		t.Skip("root mode needs the tests to run as root (make test in CI does)")
	}
	bin := os.Getenv("MRTD_BIN")
	if bin == "" {
		if os.Getenv("MRTD_INTEGRATION") == "1" {
			t.Fatal("MRTD_INTEGRATION=1 but MRTD_BIN (bin/mrtd) is not set")
		}
		t.Skip("no bin/mrtd, whose embedded runc goes into the cache: run `make test`")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Everything here is root's, under e.Dir (root's, mode 0755) in /tmp.
	base, err := os.MkdirTemp(e.Dir, "TestRootCache-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	mrtd := filepath.Join(base, "mrtd")
	if err := mrtdtest.CopyFile(bin, mrtd, 0o755); err != nil {
		t.Fatal(err)
	}
	d := mrtdtest.Dirs{Cache: filepath.Join(base, "cache"), Runtime: filepath.Join(base, "run"), Home: filepath.Join(base, "home")}
	if err := os.Mkdir(d.Home, 0o700); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(base, "img.tar.zst")
	mrtdtest.WriteTarZst(t, e.Rootfs, archive)
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])

	root := e.AsRoot()
	run := func() {
		t.Helper()
		r := root.RunBin(t, ctx, mrtd, d, "run", "--rootfs", archive, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--", "/bin/probe", "echo", "ok")
		if r.Code != 0 || r.Stdout != "ok\n" {
			t.Fatalf("mrtd run as root: status %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
	}
	run()
	tree := filepath.Join(d.Cache, "rootfs", digest)
	runcs, _ := filepath.Glob(filepath.Join(d.Cache, "runc-*[^k]"))
	if len(runcs) != 1 {
		t.Fatalf("cache holds runc binaries %q, want one", runcs)
	}
	runc := runcs[0]

	// Root's, and writable by no one else.
	err = filepath.WalkDir(d.Cache, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: owned by %d:%d, want 0:0", p, st.Uid, st.Gid)
		}
		if fi.Mode()&fs.ModeSymlink == 0 && fi.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s: mode %v, writable by group or others", p, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The uid container root maps to reads and runs the tree...
	asNobody := func(script string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: mrtdtest.UnprivilegedID, Gid: mrtdtest.UnprivilegedID}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	probe := filepath.Join(tree, "bin", "probe")
	if out, err := asNobody(`test -r "$1" && test -x "$1" && test -x "$2"`, probe, filepath.Join(tree, "tmp")); err != nil {
		t.Fatalf("uid %d cannot read and run %s: %v %s", mrtdtest.UnprivilegedID, probe, err, out)
	}
	// ...but changes nothing in it, nor in the cache.
	probeBefore, runcBefore := readBytes(t, probe), readBytes(t, runc)
	for _, tc := range []struct {
		name, script, path string
	}{
		{"create a file in the tree", `echo evil > "$1"`, filepath.Join(tree, "bin", "evil")},
		{"append to a file in the tree", `echo evil >> "$1"`, probe},
		{"remove a file from the tree", `rm "$1"`, probe},
		{"create a file in the tree's tmp", `echo evil > "$1"`, filepath.Join(tree, "tmp", "evil")},
		{"rename the tree", `mv "$1" "$1.old"`, tree},
		{"create a file in the cache dir", `echo evil > "$1"`, filepath.Join(d.Cache, "evil")},
		{"create a file in rootfs/", `echo evil > "$1"`, filepath.Join(d.Cache, "rootfs", "evil")},
		{"overwrite runc", `echo evil > "$1"`, runc},
		{"remove runc", `rm "$1"`, runc},
	} {
		if out, err := asNobody(tc.script, tc.path); err == nil {
			t.Errorf("%s: uid %d could (%s %s)", tc.name, mrtdtest.UnprivilegedID, tc.script, tc.path)
		} else {
			t.Logf("%s: refused: %s", tc.name, strings.TrimSpace(out))
		}
	}
	for _, p := range []string{filepath.Join(tree, "bin", "evil"), filepath.Join(tree, "tmp", "evil"), tree + ".old", filepath.Join(d.Cache, "evil"), filepath.Join(d.Cache, "rootfs", "evil")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists", p)
		}
	}
	if !bytes.Equal(readBytes(t, probe), probeBefore) || !bytes.Equal(readBytes(t, runc), runcBefore) {
		t.Errorf("probe or runc changed")
	}

	// A tree extracted for the host uid by an earlier mrtd is unused now,
	// and pruned.
	stale := filepath.Join(d.Cache, "rootfs", digest+"-65534.65534")
	if err := os.MkdirAll(filepath.Join(stale, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	run()
	if _, err := os.Lstat(stale); err == nil {
		t.Errorf("%s was not pruned", stale)
	}
}

// TestRootCacheRefusesSharedDir checks that root refuses a cache dir another
// uid could change: that uid could put its own runc or rootfs in place.
func TestRootCacheRefusesSharedDir(t *testing.T) {
	e := needIntegration(t)
	if !e.Dropped {
		t.Skip("root mode needs the tests to run as root (make test in CI does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := e.NewDirs(t) // owned by uid 65534
	archive := filepath.Join(e.UserDir(t, "img"), "img.tar.zst")
	mrtdtest.WriteTarZst(t, e.Rootfs, archive)
	root := e.AsRoot()
	r := root.RunBin(t, ctx, e.Mrtd, d, "run", "--runc", e.Runc, "--rootfs", archive, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--", "/bin/probe", "echo", "ok")
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	if r.Code != 125 || len(lines) != 1 || !strings.HasPrefix(lines[0], "mrtd: ") ||
		!strings.Contains(lines[0], d.Cache) || !strings.Contains(lines[0], "owned by uid 65534") || !strings.Contains(lines[0], "--cache-dir") {
		t.Fatalf("status %d stderr %q, want 125 and one line naming the cache dir, its owner and --cache-dir", r.Code, r.Stderr)
	}
	if ents, _ := os.ReadDir(filepath.Join(d.Cache, "rootfs")); len(ents) != 0 {
		t.Errorf("root extracted into a cache dir uid 65534 owns")
	}
}

func readBytes(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
