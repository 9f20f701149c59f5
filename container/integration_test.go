package container

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/reaper"
)

// The integration tests run the runc `make` built (MRTD_RUNC, which `make
// test` sets) on a tiny rootfs holding internal/mrtdtest's probe, built
// here (deps_test.go keeps container's tests from importing mrtdtest).
// What must run rootless runs in this test binary re-executed as a helper
// (helperEnv), as uid 65534 when the tests run as root.

// helperEnv names the helper's mode; see helper.
const helperEnv = "MRTD_CONTAINER_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[1:]))
	}
	code := m.Run()
	if it != nil {
		os.RemoveAll(it.dir)
	}
	os.Exit(code)
}

// itEnv is the integration environment the tests share.
type itEnv struct {
	dir    string // 0755, reachable by uid
	runc   string
	rootfs string
	bin    string // a copy of this test binary that uid can execute
	// uid and gid run the helpers: the tests' own, or 65534 when those
	// are root's.
	uid, gid int
	dropped  bool
}

var (
	itOnce sync.Once
	it     *itEnv
	itErr  error
)

// integration returns the environment, set up by the first test that needs
// it, or skips t when no runc was built.
func integration(t *testing.T) *itEnv {
	t.Helper()
	runc := os.Getenv("MRTD_RUNC")
	if runc == "" {
		if os.Getenv("MRTD_INTEGRATION") == "1" {
			t.Fatal("MRTD_INTEGRATION=1 but MRTD_RUNC is not set")
		}
		t.Skip("no runc: run `make test`, which builds runc and sets MRTD_RUNC")
	}
	itOnce.Do(func() { it, itErr = setupIntegration(runc) })
	if itErr != nil {
		t.Fatal(itErr)
	}
	return it
}

func setupIntegration(runc string) (*itEnv, error) {
	dir, err := os.MkdirTemp("", "mrtd-container-it-")
	if err != nil {
		return nil, err
	}
	e := &itEnv{dir: dir, uid: os.Geteuid(), gid: os.Getegid()}
	if e.uid == 0 {
		e.uid, e.gid, e.dropped = 65534, 65534, true
	}
	self, err := os.Executable()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e.runc, e.bin, e.rootfs = filepath.Join(dir, "runc"), filepath.Join(dir, "container.test"), filepath.Join(dir, "rootfs")
	err = os.Chmod(dir, 0o755)
	if err == nil {
		err = copyFile(runc, e.runc)
	}
	if err == nil {
		err = copyFile(self, e.bin)
	}
	if err == nil {
		err = makeProbeRootfs(e.rootfs)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("setting up the integration tests: %w", err)
	}
	return e, nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// makeProbeRootfs makes a rootfs holding the mount points runc needs and
// /bin/probe.
func makeProbeRootfs(dir string) error {
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "run", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky); err != nil {
		return err
	}
	root, err := filepath.Abs("..") // a test runs in its package's directory
	if err != nil {
		return err
	}
	// `go test` puts its own go first in PATH.
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", filepath.Join(dir, "bin", "probe"), "./internal/mrtdtest/testdata/probe")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the probe: %v\n%s", err, out)
	}
	return nil
}

// userDir makes a directory of the test's owned by uid.
func (e *itEnv) userDir(t *testing.T, name string) string {
	t.Helper()
	d := filepath.Join(e.dir, strings.ReplaceAll(t.Name(), "/", "-"), name)
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

// helperCmd is the helper in mode for the runtime dir dir, run as uid.
func (e *itEnv) helperCmd(ctx context.Context, mode, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.bin, append([]string{e.runc, dir}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", helperEnv + "=" + mode}
	cmd.Dir = e.dir
	if e.dropped {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(e.uid), Gid: uint32(e.gid)}}
	}
	return cmd
}

// runHelper runs the helper to completion and returns its stdout.
func (e *itEnv) runHelper(t *testing.T, mode, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := e.helperCmd(ctx, mode, dir, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helper %s %v: %v\n%s", mode, args, err, stderr.String())
	}
	return stdout.String()
}

// helper is the test binary run as a helper: args are runc, the runtime
// dir, then the mode's. It returns the exit status.
//
//	init                 Runtime.Init
//	start ID ROOTFS hold start a container running probe pause; print
//	                     "pid PID" once it is ready; then, with hold, keep
//	                     it until stdin closes, stop it and delete it; else
//	                     exit, leaving it as a process that died would
//	kill                 Runtime.KillStale; print "killed N"
//	exec ID ROOTFS       Runtime.Exec in a container running probe pause;
//	                     print "ok" or what went wrong (exec_test.go)
//	standby ID ROOTFS    Runtime.Create, then StartCreated (standby_test.go)
//	oom ROOTFS ARGS...   run ARGS with a 32 MiB memory limit; print how
//	                     it ended and Process.OOMKilled (oom_test.go)
func helper(mode string, args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "helper: want runc and runtime dir")
		return 2
	}
	rt := &Runtime{Runc: args[0], Dir: args[1]}
	ctx := context.Background()
	var err error
	switch {
	case mode == "init":
		err = rt.Init(ctx)
	case mode == "start" && len(args) == 5:
		err = helperStart(ctx, rt, args[2], args[3], args[4] == "hold")
	case mode == "exec" && len(args) == 4:
		err = helperExec(ctx, rt, args[2], args[3])
	case mode == "standby" && len(args) == 4:
		err = helperStandby(ctx, rt, args[2], args[3])
	case mode == "oom" && len(args) > 3:
		err = helperOOM(ctx, rt, args[2], args[3:])
	case mode == "kill":
		var killed int
		killed, err = rt.KillStale()
		fmt.Println("killed", killed)
	default:
		err = fmt.Errorf("helper: bad mode %q or arguments %q", mode, args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func helperStart(ctx context.Context, rt *Runtime, id, rootfs string, hold bool) error {
	ctx, rp, stop, err := startReaper(ctx)
	if err != nil {
		return err
	}
	defer stop()

	ready := make(chan struct{})
	var once sync.Once
	o := Options{Rootfs: rootfs, Args: []string{"/bin/probe", "pause"}, UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	p, err := rt.Start(ctx, id, o, rp, func(stream string, line []byte, partial bool) {
		if stream == "stdout" && string(line) == "ready" {
			once.Do(func() { close(ready) })
		}
	})
	if err != nil {
		return err
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	select {
	case <-ready:
	case e := <-p.Exited():
		return fmt.Errorf("container %s exited with status %d before it was ready", id, e.Code())
	case <-timeout.C:
		return fmt.Errorf("container %s: no ready line within 30s", id)
	}
	fmt.Println("pid", p.Pid)
	if !hold {
		return nil // and this process exits: the bundle's lock goes with it
	}
	io.Copy(io.Discard, os.Stdin)
	if err := p.Signal(unix.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.Exited():
	case <-timeout.C:
		return fmt.Errorf("container %s did not stop on SIGTERM", id)
	}
	return rt.Delete(ctx, p)
}

// parsePid reads helper start's "pid PID".
func parsePid(t *testing.T, line string) int {
	t.Helper()
	s, ok := strings.CutPrefix(strings.TrimSpace(line), "pid ")
	pid, err := strconv.Atoi(s)
	if !ok || err != nil || pid <= 1 {
		t.Fatalf("helper start printed %q, want pid PID", line)
	}
	return pid
}

func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, 0)
	return n == 1
}

func TestKillStaleRunc(t *testing.T) {
	e := integration(t)
	// The init of the container left behind is reparented to this process
	// once its helper exits: reap it here, and see how it ended.
	if err := reaper.SetSubreaper(); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	dir := e.userDir(t, "run")
	e.runHelper(t, "init", dir)

	// One container left by a process that died, one whose process lives.
	deadPid := parsePid(t, e.runHelper(t, "start", dir, "dead", e.rootfs, "exit"))
	deadFd, err := unix.PidfdOpen(deadPid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(deadFd)
	defer unix.Kill(deadPid, unix.SIGKILL) // should the test fail

	holder := e.helperCmd(context.Background(), "start", dir, "live", e.rootfs, "hold")
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var holderErr bytes.Buffer
	holder.Stderr = &holderErr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		holder.Process.Kill()
		holder.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		holder.Wait()
		t.Fatalf("live container: %v (helper stderr: %s)", err, holderErr.String())
	}
	livePid := parsePid(t, line)
	liveFd, err := unix.PidfdOpen(livePid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(liveFd)

	if out := e.runHelper(t, "kill", dir); strings.TrimSpace(out) != "killed 1" {
		t.Errorf("KillStale printed %q, want killed 1", out)
	}
	if !exited(deadFd) {
		t.Fatal("the dead process's container still runs after KillStale returned")
	}
	var ws unix.WaitStatus
	if pid, err := unix.Wait4(deadPid, &ws, unix.WNOHANG, nil); err != nil || pid != deadPid || ws.Signal() != unix.SIGKILL {
		t.Errorf("the dead process's container init: wait4 = %d, %v, status %v; want killed by SIGKILL", pid, err, ws)
	}
	if exited(liveFd) {
		t.Error("KillStale killed the container of a live process")
	}
	for _, p := range []string{"bundles/dead", "runc/dead"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("KillStale removed %s: %v", p, err)
		}
	}

	// Init removes what KillStale left, and only that.
	e.runHelper(t, "init", dir)
	for _, p := range []string{"bundles/dead", "runc/dead"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Init after KillStale left %s: %v", p, err)
		}
	}
	if exited(liveFd) {
		t.Error("Init after KillStale killed the container of a live process")
	}

	stdin.Close()
	if err := holder.Wait(); err != nil {
		t.Fatalf("live container's helper: %v (stderr: %s)", err, holderErr.String())
	}
	for _, sub := range []string{"runc", "bundles"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, ent := range ents {
			t.Errorf("left in the runtime dir: %s/%s", sub, ent.Name())
		}
	}
}

// TestRunUserIDMaps runs probe as a user of a container mapped with several
// lines: runc run by root maps them itself. (Rootless, mrtd runs runc in a
// user namespace of its own to do the same.)
func TestRunUserIDMaps(t *testing.T) {
	e := integration(t)
	if os.Geteuid() != 0 {
		t.Skip("mapping more than one's own id takes runc run by root (or newuidmap)")
	}
	// Host ids: 65534 for container 1000, 65533 and 65532 for others;
	// none is used by anything here.
	maps := &IDMaps{
		UID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65533, Size: 1}, {ContainerID: 1000, HostID: 65534, Size: 1}},
		GID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65533, Size: 1}, {ContainerID: 1000, HostID: 65534, Size: 1}, {ContainerID: 2000, HostID: 65532, Size: 1}},
	}
	for _, tc := range []struct {
		name           string
		user           User
		uid, gid       string
		groups, capEff string
	}{
		{"user", User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000}}, "1000", "1000", "2000", "0000000000000000"},
		{"root", User{}, "0", "0", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &Runtime{Runc: e.runc, Dir: filepath.Join(e.userDir(t, "run"), "root")}
			if err := rt.Init(context.Background()); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			o := Options{
				Rootfs: e.rootfs, Args: []string{"/bin/probe", "cat", "/proc/self/status"},
				UID: 65534, GID: 65534, IDMaps: maps, User: tc.user,
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			status, err := rt.Run(ctx, "keep-id", o, Stdio{Stdout: &stdout, Stderr: &stderr}, nil)
			if err != nil || status != 0 {
				t.Fatalf("Run = %d, %v (stderr: %s)", status, err, stderr.String())
			}
			fields := map[string][]string{}
			for l := range strings.Lines(stdout.String()) {
				k, v, _ := strings.Cut(l, ":")
				fields[k] = strings.Fields(v)
			}
			check := func(key string, want []string) {
				t.Helper()
				if got := fields[key]; !slices.Equal(got, want) {
					t.Errorf("%s: %q, want %q", key, got, want)
				}
			}
			check("Uid", []string{tc.uid, tc.uid, tc.uid, tc.uid})
			check("Gid", []string{tc.gid, tc.gid, tc.gid, tc.gid})
			check("Groups", strings.Fields(tc.groups))
			if tc.capEff != "" {
				check("CapEff", []string{tc.capEff})
				check("CapPrm", []string{tc.capEff})
			} else if slices.Equal(fields["CapEff"], []string{"0000000000000000"}) {
				t.Error("container root has no effective capabilities")
			}
			if slices.Equal(fields["CapBnd"], []string{"0000000000000000"}) || len(fields["CapBnd"]) != 1 {
				t.Errorf("CapBnd %q, want the default bounding set", fields["CapBnd"])
			}
		})
	}
}

// startReaper routes this helper process's runc children and containers
// through a reaper of its own, as the pool does, until stop is called.
func startReaper(ctx context.Context) (context.Context, *reaper.Reaper, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	rp := reaper.New()
	UseReaper(rp)
	if err := reaper.SetSubreaper(); err != nil {
		cancel()
		return nil, nil, nil, err
	}
	reaped := make(chan error, 1)
	go func() { reaped <- rp.Run(ctx) }()
	return ctx, rp, func() { cancel(); <-reaped }, nil
}
