package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCreateThenStart creates a container (runc create) whose command runs
// only on StartCreated, in the same process Create returned; and removes a
// created container that never started.
func TestCreateThenStart(t *testing.T) {
	e := integration(t)
	dir := e.userDir(t, "run")
	out := e.runHelper(t, "standby", dir, "sb", e.rootfs)
	want := []string{
		"created: state created, no output",
		"started: same pid, ready, state running",
		"discarded: gone",
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("helper printed:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "bundles")); len(ents) != 0 {
		t.Errorf("bundles left: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "runc")); len(ents) != 0 {
		t.Errorf("runc state left: %v", ents)
	}
}

// helperStandby is the helper's standby mode: it prints one line per step
// of TestCreateThenStart, or fails.
func helperStandby(ctx context.Context, rt *Runtime, id, rootfs string) error {
	if err := rt.Init(ctx); err != nil {
		return err
	}
	ctx, rp, stop, err := startReaper(ctx)
	if err != nil {
		return err
	}
	defer stop()
	o := Options{Rootfs: rootfs, Args: []string{"/bin/probe", "pause"}, UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	var mu sync.Mutex
	var lines []string
	ready := make(chan struct{})
	output := func(stream string, line []byte, partial bool) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, string(line))
		if string(line) == "ready" {
			close(ready)
		}
	}
	p, err := rt.Create(ctx, id, o, rp, output)
	if err != nil {
		return err
	}
	// Long enough for a command started by mistake to print.
	time.Sleep(100 * time.Millisecond)
	st, err := askRunc(rt, id)
	if err != nil {
		return err
	}
	mu.Lock()
	printed := len(lines)
	mu.Unlock()
	if st.Status != "created" || st.Pid != p.Pid || printed != 0 {
		return fmt.Errorf("after Create: state %s, pid %d (Process %d), output %q", st.Status, st.Pid, p.Pid, lines)
	}
	fmt.Println("created: state created, no output")

	if err := rt.StartCreated(ctx, p); err != nil {
		return err
	}
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		return errors.New("no ready line within 30s of StartCreated")
	}
	if st, err = askRunc(rt, id); err != nil {
		return err
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Pid))
	if st.Status != "running" || st.Pid != p.Pid || !strings.HasSuffix(exe, "/bin/probe") {
		return fmt.Errorf("after StartCreated: state %s, pid %d (Process %d) running %q", st.Status, st.Pid, p.Pid, exe)
	}
	fmt.Println("started: same pid, ready, state running")
	if err := p.Signal(unix.SIGKILL); err != nil {
		return err
	}
	<-p.Exited()
	if err := rt.Delete(ctx, p); err != nil {
		return err
	}

	// A standby never started: killed, then a plain delete.
	p, err = rt.Create(ctx, id+".1", o, rp, output)
	if err != nil {
		return err
	}
	if err := p.Signal(unix.SIGKILL); err != nil {
		return err
	}
	<-p.Exited()
	if err := rt.Delete(ctx, p); err != nil {
		return err
	}
	if _, err := askRunc(rt, id+".1"); err == nil {
		return errors.New("a deleted standby is still in runc's state")
	}
	fmt.Println("discarded: gone")
	return nil
}

type runcStatus struct {
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

// askRunc asks runc for container id's state.
func askRunc(rt *Runtime, id string) (runcStatus, error) {
	var st runcStatus
	out, err := exec.Command(rt.Runc, "--root", rt.StateDir(), "state", id).Output()
	if err != nil {
		return st, fmt.Errorf("runc state %s: %w", id, err)
	}
	return st, json.Unmarshal(out, &st)
}
