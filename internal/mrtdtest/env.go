package mrtdtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The integration tests start real rootless containers with the runc the
// build produced (MRTD_RUNC, set by `make test`) and a tiny rootfs holding
// one static test program (testdata/probe). When the tests run as root
// they run mrtd as uid 65534, so the containers are rootless as a user's
// would be.

// Env is the integration environment the tests of one package share.
type Env struct {
	Dir    string // 0755, reachable by the unprivileged uid
	Mrtd   string // mrtd built from ./cmd/mrtd, without assets
	Runc   string
	Rootfs string // the tiny rootfs directory
	// UID and GID run mrtd; container root maps to them.
	UID, GID int
	Dropped  bool // the tests run as root and mrtd as UID
}

// UnprivilegedID is the uid and gid mrtd runs as when the tests run as
// root: mrtd's default host uid.
const UnprivilegedID = 65534

// Setup prepares the environment in a new temporary directory: it copies
// MRTD_RUNC, builds mrtd and the tiny rootfs. It returns nil and no error
// when MRTD_RUNC is not set, so that the tests skip (plain `go test`), and
// an error when MRTD_INTEGRATION=1 asks for the integration tests. Close
// removes what it made.
func Setup() (*Env, error) {
	runc := os.Getenv("MRTD_RUNC")
	if runc == "" {
		if os.Getenv("MRTD_INTEGRATION") == "1" {
			return nil, errors.New("MRTD_INTEGRATION=1 but MRTD_RUNC is not set")
		}
		return nil, nil // the integration tests skip, saying why
	}
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mrtd-it-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, UID: os.Geteuid(), GID: os.Getegid()}
	if err := e.setup(root, runc); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return e, nil
}

func (e *Env) setup(root, runc string) error {
	if err := os.Chmod(e.Dir, 0o755); err != nil {
		return err
	}
	if e.UID == 0 {
		e.UID, e.GID, e.Dropped = UnprivilegedID, UnprivilegedID, true
	}
	e.Runc = filepath.Join(e.Dir, "runc")
	if err := CopyFile(runc, e.Runc, 0o755); err != nil {
		return fmt.Errorf("MRTD_RUNC: %w", err)
	}
	e.Mrtd = filepath.Join(e.Dir, "mrtd")
	if err := goBuild(root, e.Mrtd, "./cmd/mrtd"); err != nil {
		return fmt.Errorf("building mrtd: %w", err)
	}
	e.Rootfs = filepath.Join(e.Dir, "rootfs")
	return makeRootfs(root, e.Rootfs)
}

// Close removes the environment's directory.
func (e *Env) Close() {
	if e != nil {
		os.RemoveAll(e.Dir)
	}
}

// Need skips t when e is nil: the integration environment was not set up,
// because the tests were run with plain `go test` and no runc was built.
func Need(t testing.TB, e *Env) *Env {
	t.Helper()
	if e == nil {
		t.Skip("no runc: run `make test`, which builds runc and sets MRTD_RUNC")
	}
	return e
}

// ModuleRoot is the directory of the go.mod above the working directory
// (a test's is its package's).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// goBuild builds the package pkg of the module at root into out, static.
// `go test` puts its own go first in PATH.
func goBuild(root, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// RealMrtd returns a copy of the real bin/mrtd (MRTD_BIN, with its embedded
// runc and rootfs) that the unprivileged uid can execute.
func (e *Env) RealMrtd(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("MRTD_BIN")
	if bin == "" {
		if os.Getenv("MRTD_INTEGRATION") == "1" {
			t.Fatal("MRTD_INTEGRATION=1 but MRTD_BIN (bin/mrtd) is not set")
		}
		t.Skip("no bin/mrtd: run `make test`")
	}
	local := filepath.Join(e.UserDir(t, "bin"), "mrtd")
	if err := CopyFile(bin, local, 0o755); err != nil {
		t.Fatal(err)
	}
	return local
}

// CopyFile copies src to dst, which gets mode.
func CopyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

// AsRoot is e with mrtd run as the tests' own uid, root (when Dropped).
func (e *Env) AsRoot() *Env {
	root := *e
	root.UID, root.GID, root.Dropped = 0, 0, false
	return &root
}

// UserDir makes a directory of the test's, owned by the uid mrtd runs as.
func (e *Env) UserDir(t testing.TB, name string) string {
	t.Helper()
	d := filepath.Join(e.Dir, strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()), name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if e.Dropped {
		for p := d; p != e.Dir; p = filepath.Dir(p) {
			if err := os.Chown(p, e.UID, e.GID); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

// Result is what one mrtd process did.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Dirs are the per-test cache, runtime and home directories.
type Dirs struct {
	Cache, Runtime, Home string
}

// NewDirs makes the test's Dirs, owned by the uid mrtd runs as.
func (e *Env) NewDirs(t testing.TB) Dirs {
	return Dirs{Cache: e.UserDir(t, "cache"), Runtime: e.UserDir(t, "run"), Home: e.UserDir(t, "home")}
}

// Command returns bin with args, run as the uid mrtd runs as, with a small
// environment of its own (append to cmd.Env to add).
func (e *Env) Command(ctx context.Context, bin string, d Dirs, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + d.Home, "LANG=C.UTF-8"}
	if e.Dropped {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(e.UID), Gid: uint32(e.GID)}}
	}
	return cmd
}

// RunArgs are the flags that point `mrtd run` at the environment's runc
// and rootfs and the test's directories.
func (e *Env) RunArgs(d Dirs, extra ...string) []string {
	args := []string{"run", "--runc", e.Runc, "--rootfs", e.Rootfs, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime}
	return append(args, extra...)
}

// DaemonArgs point the pool at the environment's runc and rootfs and the
// test's directories. The short stop timeout bounds a stop that reaches a
// probe before its signal handler is installed (a pid 1 ignores signals it
// does not handle); a later --stop-timeout in extra wins.
func (e *Env) DaemonArgs(d Dirs, extra ...string) []string {
	return append([]string{"--runc", e.Runc, "--rootfs", e.Rootfs, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--stop-timeout", "3s"}, extra...)
}

// Run runs the environment's mrtd to completion, for a minute at most.
func (e *Env) Run(t testing.TB, d Dirs, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.RunBin(t, ctx, e.Mrtd, d, args...)
}

// RunBin runs bin to completion.
func (e *Env) RunBin(t testing.TB, ctx context.Context, bin string, d Dirs, args ...string) Result {
	t.Helper()
	return RunCmd(t, e.Command(ctx, bin, d, args...))
}

// RunCmd runs a prepared command to completion.
func RunCmd(t testing.TB, cmd *exec.Cmd) Result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%v: %v", cmd.Args, err)
		}
		r.Code = ee.ExitCode()
	}
	return r
}

// StartRun starts `mrtd run` with args and returns once its container
// printed its first line, "ready"; it is killed when the test ends.
func (e *Env) StartRun(t testing.TB, d Dirs, args ...string) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	cmd := e.Command(context.Background(), e.Mrtd, d, args...)
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

// StartDaemon starts the environment's mrtd with args and follows its log;
// it is killed when the test ends.
func (e *Env) StartDaemon(t testing.TB, d Dirs, args ...string) *Daemon {
	t.Helper()
	return StartCmd(t, e.Command(context.Background(), e.Mrtd, d, args...))
}

// StartCmd starts a prepared mrtd command and follows its log, keeping
// every line; it is killed when the test ends.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Daemon {
	t.Helper()
	p, err := Start(cmd, Options{Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		<-p.Exited()
	})
	return p
}

// AssertClean checks that no container state and no bundle is left in
// d's runtime dir.
func AssertClean(t testing.TB, d Dirs) {
	t.Helper()
	for _, sub := range []string{"runc", "bundles"} {
		ents, err := os.ReadDir(filepath.Join(d.Runtime, sub))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			t.Errorf("left in the runtime dir: %s/%s", sub, e.Name())
		}
	}
}
