package container

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// staleFixture is a runtime dir holding bundles and runc state as a
// process that died leaves them, their inits being this test's children.
type staleFixture struct {
	t  *testing.T
	rt *Runtime
}

func newStaleFixture(t *testing.T) *staleFixture {
	rt := &Runtime{Dir: t.TempDir()}
	for _, d := range []string{rt.StateDir(), rt.BundlesDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return &staleFixture{t: t, rt: rt}
}

// bundle writes the bundle of id, and runc's state when state is not nil.
func (f *staleFixture) bundle(id string, state any) {
	f.t.Helper()
	dir := filepath.Join(f.rt.BundlesDir(), id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o600); err != nil {
		f.t.Fatal(err)
	}
	if state == nil {
		return
	}
	data, ok := state.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(state); err != nil {
			f.t.Fatal(err)
		}
	}
	sdir := filepath.Join(f.rt.StateDir(), id)
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sdir, "state.json"), data, 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// start starts a process that runs until killed, named name, and returns it
// with its runc state.
func (f *staleFixture) start(name string) (*exec.Cmd, runcState) {
	f.t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		f.t.Skip("no sleep(1)")
	}
	bin := filepath.Join(f.t.TempDir(), name)
	data, err := os.ReadFile(sleep)
	if err == nil {
		err = os.WriteFile(bin, data, 0o755)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(bin, "600")
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	start, _, err := procStat(cmd.Process.Pid)
	if err != nil {
		f.t.Fatal(err)
	}
	return cmd, runcState{InitPid: cmd.Process.Pid, InitStart: start}
}

func TestKillStale(t *testing.T) {
	f := newStaleFixture(t)
	// Its name, as /proc/PID/stat shows it, holds ") " and a number: the
	// start time is found after the last parenthesis.
	dead, deadState := f.start("x) 1 2 (y")
	f.bundle("dead", deadState)
	reused, reusedState := f.start("reused")
	reusedState.InitStart++ // the pid is another process's now
	f.bundle("reused", reusedState)
	locked, lockedState := f.start("locked")
	f.bundle("locked", lockedState)
	held, err := lockBundle(filepath.Join(f.rt.BundlesDir(), "locked"), unix.LOCK_EX)
	if err != nil {
		t.Fatal(err)
	}
	defer held.lock.Close()
	f.bundle("never-started", nil)
	f.bundle("corrupt", []byte("{"))
	if err := os.WriteFile(filepath.Join(f.rt.BundlesDir(), "not-a-bundle"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	killed, err := f.rt.KillStale()
	if killed != 1 {
		t.Errorf("killed %d, want 1", killed)
	}
	if err == nil || !strings.Contains(err.Error(), "container corrupt") {
		t.Errorf("error %v, want one about the corrupt state", err)
	}
	// KillStale returns once the killed init has exited: the exit is
	// there to collect.
	var ws unix.WaitStatus
	pid, werr := unix.Wait4(dead.Process.Pid, &ws, unix.WNOHANG, nil)
	if werr != nil || pid != dead.Process.Pid || ws.Signal() != syscall.SIGKILL {
		t.Errorf("the dead process's init: wait4 = %d, %v, status %v; want killed by SIGKILL", pid, werr, ws)
	}
	for _, c := range []*exec.Cmd{reused, locked} {
		if err := c.Process.Signal(syscall.Signal(0)); err != nil {
			t.Errorf("%s was killed: %v", c.Path, err)
		}
	}
	for _, p := range []string{"bundles/dead", "bundles/locked", "bundles/never-started", "runc/dead", "runc/reused"} {
		if _, err := os.Stat(filepath.Join(f.rt.Dir, p)); err != nil {
			t.Errorf("KillStale removed %s: %v", p, err)
		}
	}

	// Once more: the dead init is gone, its state stays; nothing to kill.
	if killed, err := f.rt.KillStale(); killed != 0 || err == nil {
		t.Errorf("again: killed %d, error %v; want 0 and the corrupt state's error", killed, err)
	}
}

func TestKillStaleNoRuntimeDir(t *testing.T) {
	rt := &Runtime{Dir: filepath.Join(t.TempDir(), "missing")}
	if killed, err := rt.KillStale(); killed != 0 || err != nil {
		t.Fatalf("KillStale = %d, %v; want 0, nil", killed, err)
	}
}

func TestWaitExitedTimesOut(t *testing.T) {
	f := newStaleFixture(t)
	cmd, _ := f.start("sleeper")
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	begin := time.Now()
	if left := waitExited([]int{pidfd}, 50*time.Millisecond); len(left) != 1 || left[0] != 0 {
		t.Errorf("waitExited = %v, want [0]: the process runs", left)
	}
	if d := time.Since(begin); d < 50*time.Millisecond {
		t.Errorf("waitExited returned after %v, before its timeout", d)
	}
	cmd.Process.Kill()
	if left := waitExited([]int{pidfd}, 10*time.Second); len(left) != 0 {
		t.Errorf("waitExited = %v after SIGKILL, want none left", left)
	}
}

func TestCgroupsPath(t *testing.T) {
	rt := &Runtime{Dir: "/run/mrtd"}
	if got := (&Runtime{Dir: rt.Dir, Rootless: true}).cgroupsPath("a"); got != "" {
		t.Errorf("rootless runtime: cgroups path %q, want none", got)
	}
	got := rt.cgroupsPath("a")
	if os.Geteuid() != 0 {
		if got != "" {
			t.Errorf("runtime of uid %d: cgroups path %q, want none", os.Geteuid(), got)
		}
		return
	}
	if !strings.HasPrefix(got, "/mrtd/") || !strings.HasSuffix(got, "/a") {
		t.Errorf("root's runtime: cgroups path %q, want /mrtd/<hash>/a", got)
	}
}

func TestProcStat(t *testing.T) {
	start, state, err := procStat(os.Getpid())
	if err != nil || start == 0 || state != 'R' && state != 'S' {
		t.Fatalf("procStat(self) = %d, %q, %v", start, state, err)
	}
	if _, _, err := procStat(1 << 30); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("procStat of no process: %v, want ErrNotExist", err)
	}
}
