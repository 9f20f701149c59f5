package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The integration tests start real rootless containers with the runc the
// build produced (MRTD_RUNC, set by `make test`) and a tiny rootfs holding
// one static test program (testdata/probe). When the tests run as root they
// run mrtd as uid 65534, so the containers are rootless as a user's would be.

// testEnv is shared by the integration tests; nil when they cannot run.
var testEnv *integrationEnv

type integrationEnv struct {
	dir    string // 0755, reachable by the unprivileged uid
	mrtd   string // mrtd built from this package, without assets
	runc   string
	rootfs string // tiny rootfs directory
	// uid and gid run mrtd; container root maps to them.
	uid, gid int
	dropped  bool // the tests run as root and mrtd as uid
}

const unprivilegedID = 65534

func TestMain(m *testing.M) {
	code, err := setupIntegration()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		os.Exit(1)
	}
	if code >= 0 {
		os.Exit(code)
	}
	code = m.Run()
	if testEnv != nil {
		os.RemoveAll(testEnv.dir)
	}
	os.Exit(code)
}

// setupIntegration prepares testEnv. It returns -1 to go on.
func setupIntegration() (int, error) {
	runc := os.Getenv("MRTD_RUNC")
	if runc == "" {
		if os.Getenv("MRTD_INTEGRATION") == "1" {
			return 1, fmt.Errorf("MRTD_INTEGRATION=1 but MRTD_RUNC is not set")
		}
		return -1, nil // integration tests skip, saying why
	}
	dir, err := os.MkdirTemp("", "mrtd-it-")
	if err != nil {
		return 1, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return 1, err
	}
	e := &integrationEnv{dir: dir, uid: os.Geteuid(), gid: os.Getegid()}
	if e.uid == 0 {
		e.uid, e.gid, e.dropped = unprivilegedID, unprivilegedID, true
	}
	e.runc = filepath.Join(dir, "runc")
	if err := copyFile(runc, e.runc, 0o755); err != nil {
		return 1, fmt.Errorf("MRTD_RUNC: %w", err)
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	e.mrtd = filepath.Join(dir, "mrtd")
	if out, err := exec.Command(gobin, "build", "-o", e.mrtd, ".").CombinedOutput(); err != nil {
		return 1, fmt.Errorf("building mrtd: %v\n%s", err, out)
	}
	e.rootfs = filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "run", "etc", "srv"} {
		if err := os.MkdirAll(filepath.Join(e.rootfs, d), 0o755); err != nil {
			return 1, err
		}
	}
	os.Chmod(filepath.Join(e.rootfs, "tmp"), 0o777|os.ModeSticky)
	if err := os.WriteFile(filepath.Join(e.rootfs, "etc", "not-executable"), []byte("#!/bin/probe\n"), 0o644); err != nil {
		return 1, err
	}
	if err := os.WriteFile(filepath.Join(e.rootfs, "bin", "no-interp"), []byte("#!/missing/interp\n"), 0o755); err != nil {
		return 1, err
	}
	build := exec.Command(gobin, "build", "-o", filepath.Join(e.rootfs, "bin", "probe"), "./testdata/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("building probe: %v\n%s", err, out)
	}
	testEnv = e
	return -1, nil
}

// realMrtd returns a copy of the real bin/mrtd (MRTD_BIN, with its embedded
// runc and rootfs) that the unprivileged uid can execute.
func (e *integrationEnv) realMrtd(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("MRTD_BIN")
	if bin == "" {
		if os.Getenv("MRTD_INTEGRATION") == "1" {
			t.Fatal("MRTD_INTEGRATION=1 but MRTD_BIN (bin/mrtd) is not set")
		}
		t.Skip("no bin/mrtd: run `make test`")
	}
	local := filepath.Join(e.userDir(t, "bin"), "mrtd")
	if err := copyFile(bin, local, 0o755); err != nil {
		t.Fatal(err)
	}
	return local
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

// needIntegration skips t when the integration environment was not set up:
// only when the tests were run with plain `go test` and no runc was built.
func needIntegration(t *testing.T) *integrationEnv {
	t.Helper()
	if testEnv == nil {
		t.Skip("no runc: run `make test`, which builds runc and sets MRTD_RUNC")
	}
	return testEnv
}

// userDir makes a directory owned by the uid mrtd runs as.
func (e *integrationEnv) userDir(t *testing.T, name string) string {
	t.Helper()
	d := filepath.Join(e.dir, strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()), name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if e.dropped {
		for p := d; p != e.dir; p = filepath.Dir(p) {
			if err := os.Chown(p, e.uid, e.gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

// result is what one mrtd process did.
type result struct {
	stdout, stderr string
	code           int
}

// dirs are the per-test cache and runtime directories.
type dirs struct {
	cache, runtime, home string
}

func (e *integrationEnv) newDirs(t *testing.T) dirs {
	return dirs{cache: e.userDir(t, "cache"), runtime: e.userDir(t, "run"), home: e.userDir(t, "home")}
}

// command returns mrtd with args, run as the test's unprivileged uid.
func (e *integrationEnv) command(ctx context.Context, bin string, d dirs, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + d.home, "LANG=C.UTF-8"}
	if e.dropped {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(e.uid), Gid: uint32(e.gid)}}
	}
	return cmd
}

// runArgs are the flags that point mrtd run at the test's runc, rootfs
// and directories.
func (e *integrationEnv) runArgs(d dirs, extra ...string) []string {
	args := []string{"run", "--runc", e.runc, "--rootfs", e.rootfs, "--cache-dir", d.cache, "--runtime-dir", d.runtime}
	return append(args, extra...)
}

// run runs mrtd to completion.
func (e *integrationEnv) run(t *testing.T, d dirs, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.runBin(t, ctx, e.mrtd, d, args...)
}

func (e *integrationEnv) runBin(t *testing.T, ctx context.Context, bin string, d dirs, args ...string) result {
	t.Helper()
	cmd := e.command(ctx, bin, d, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("mrtd %v: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// start starts mrtd and returns once its container printed its first line.
func (e *integrationEnv) start(t *testing.T, d dirs, args ...string) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	cmd := e.command(context.Background(), e.mrtd, d, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("waiting for the container's first line: %v (stderr: %s)", err, stderr.String())
	}
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("first line %q, want ready", line)
	}
	return cmd, r, &stderr
}

// assertClean checks that no container state and no bundle is left.
func assertClean(t *testing.T, d dirs) {
	t.Helper()
	for _, sub := range []string{"runc", "bundles"} {
		ents, err := os.ReadDir(filepath.Join(d.runtime, sub))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			t.Errorf("left in the runtime dir: %s/%s", sub, e.Name())
		}
	}
}

func readAll(r io.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}
