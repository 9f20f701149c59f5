package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// standbyOf waits until worker w's status shows a standby, and returns the
// pid of its init as runc's state of the worker's other slot has it, that
// slot's id, and the worker's running pid. A standby whose pid is in skip
// is not the one waited for (a replaced one lingers until deleted).
func standbyOf(t *testing.T, e *mrtdtest.Env, d mrtdtest.Dirs, w int, skip ...int) (pid int, id string, running int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp := statusJSON(t, e, d)
		for _, st := range resp.Workers {
			if st.Worker != w || !st.Standby || st.State != "running" {
				continue
			}
			id = fmt.Sprintf("mrtd-%d", w)
			if st.ContainerID == id {
				id += ".1"
			}
			pid, status := runcStateOf(t, d, id)
			if status == "created" && pid > 0 && !slices.Contains(skip, pid) {
				return pid, id, st.Pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %d has no new standby: %+v", w, resp.Workers)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runcStateOf reads runc's state file of container id: its init's pid and
// whether it is created (a standby) or runs. runc's status is not in the
// file; "created" is told by the exec fifo runc removes at start.
func runcStateOf(t *testing.T, d mrtdtest.Dirs, id string) (int, string) {
	t.Helper()
	dir := filepath.Join(d.Runtime, "runc", id)
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return 0, ""
	}
	var st struct {
		InitPid int `json:"init_process_pid"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("runc state of %s: %v", id, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "exec.fifo")); err == nil {
		return st.InitPid, "created"
	}
	return st.InitPid, "running"
}

// waitGone waits, bounded, for pid to be gone.
func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); mrtdtest.Alive(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still there", what, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStandby runs a pool with --standby: a restart starts the standby
// (the replacement's pid is the standby's init), which is then replaced;
// a standby whose init is killed is replaced and the next restart still
// works; a reload that changes a worker discards its standby; scale down
// removes it; kill -9 of mrtd leaves standbys the next mrtd removes; stop
// removes them.
func TestStandby(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	path := filepath.Join(e.UserDir(t, "conf"), "config.toml")
	write := func(env1 string) {
		t.Helper()
		body := fmt.Sprintf("workers = 2\nstandby = true\ncommand = [\"/bin/probe\", \"pause\"]\n[worker.1]\nenv = [\"ONLY=%s\"]\n", env1)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chown(path, e.UID, e.GID)
	}
	write("a")
	args := e.DaemonArgs(d, "--config", path)
	p := e.StartDaemon(t, d, args...)
	p.Running(t, 2)

	// A restart starts the standby.
	sb, sbID, cur := standbyOf(t, e, d, 0)
	syscall.Kill(cur, syscall.SIGKILL)
	ev := p.Next(t, "worker running")
	if int(ev["pid"].(float64)) != sb || ev["fromStandby"] != true || ev["containerId"] != sbID {
		t.Fatalf("restart %v, want the standby %s (pid %d) started", ev, sbID, sb)
	}
	if _, status := runcStateOf(t, d, sbID); status != "running" {
		t.Errorf("the started standby %s is %q to runc", sbID, status)
	}
	waitGone(t, "the killed worker", cur)

	// Replaced, in the dead container's slot; kill the new one's init
	// while it waits: it is replaced again.
	sb2, _, _ := standbyOf(t, e, d, 0)
	syscall.Kill(sb2, syscall.SIGKILL)
	p.Next(t, "standby died while waiting, replacing it")
	sb3, _, cur := standbyOf(t, e, d, 0, sb2)
	if cur != sb {
		t.Errorf("worker 0 runs pid %d, want %d still", cur, sb)
	}
	// And the next restart still works, from the replacement.
	syscall.Kill(cur, syscall.SIGKILL)
	if ev := p.Next(t, "worker running"); int(ev["pid"].(float64)) != sb3 || ev["fromStandby"] != true {
		t.Fatalf("restart after the standby was replaced: %v, want pid %d from the standby", ev, sb3)
	}

	// A reload that changes worker 1 discards its standby.
	old1, _, run1 := standbyOf(t, e, d, 1)
	write("b")
	p.Signal(syscall.SIGHUP)
	if ev := p.Next(t, "reloaded"); ev["restarted"] != "[1]" {
		t.Fatalf("reload %v, want worker 1 restarted", ev)
	}
	ev = p.Next(t, "worker running")
	if ev["worker"].(float64) != 1 || int(ev["pid"].(float64)) == old1 || ev["fromStandby"] != nil {
		t.Fatalf("after the reload: %v, want worker 1 in a new container, not its standby %d", ev, old1)
	}
	waitGone(t, "worker 1's outdated standby", old1)
	waitGone(t, "worker 1's old container", run1)
	new1, _, _ := standbyOf(t, e, d, 1, old1)

	// Scale down removes worker 1's standby with it.
	if r := ctl(t, e, d, "scale", "1"); r.Code != 0 {
		t.Fatalf("mrtd scale 1: %d %q", r.Code, r.Stderr)
	}
	waitGone(t, "worker 1's standby after scale 1", new1)
	for _, id := range []string{"mrtd-1", "mrtd-1.1"} {
		if _, err := os.Stat(filepath.Join(d.Runtime, "runc", id)); err == nil {
			t.Errorf("%s left in runc's state after scale 1", id)
		}
	}

	// kill -9 of mrtd: the next one removes the workers and standbys left.
	sb0, _, run0 := standbyOf(t, e, d, 0)
	p.Signal(syscall.SIGKILL)
	p.Err()
	second := e.StartDaemon(t, d, args...)
	second.Running(t, 2)
	for _, pid := range []int{sb0, run0} {
		if mrtdtest.Alive(pid) {
			t.Errorf("pid %d of the killed mrtd still there", pid)
		}
	}
	standbyOf(t, e, d, 0)
	standbyOf(t, e, d, 1)
	// Stop removes them too: nothing left in the runtime dir.
	second.StopCleanly(t, d)
}
