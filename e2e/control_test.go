package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mrt-project/mrt/control"
	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// ctl runs `mrtd status|scale|restart` as the daemon's user.
func ctl(t *testing.T, e *mrtdtest.Env, d mrtdtest.Dirs, args ...string) mrtdtest.Result {
	t.Helper()
	return e.Run(t, d, append(args, "--runtime-dir", d.Runtime)...)
}

func statusJSON(t *testing.T, e *mrtdtest.Env, d mrtdtest.Dirs) control.Response {
	t.Helper()
	r := ctl(t, e, d, "status", "--json")
	var resp control.Response
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &resp) != nil {
		t.Fatalf("mrtd status --json: status %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	return resp
}

// waitRunning polls mrtd status until n workers run and returns their pids.
func waitRunning(t *testing.T, e *mrtdtest.Env, d mrtdtest.Dirs, n int) map[int]int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp := statusJSON(t, e, d)
		pids := map[int]int{}
		for _, w := range resp.Workers {
			if w.State == "running" {
				pids[w.Worker] = w.Pid
			}
		}
		if len(pids) == n && len(resp.Workers) == n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d running workers, status says %+v", n, resp)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestControlStatusScaleRestart(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "4", "--", "/bin/probe", "pause")...)
	p.Running(t, 4) // the control socket exists before the first worker starts
	before := waitRunning(t, e, d, 4)

	r := ctl(t, e, d, "status")
	if r.Code != 0 || !strings.Contains(r.Stdout, "WORKER  CONTAINER  STATE") || strings.Count(r.Stdout, " running ") != 4 {
		t.Fatalf("mrtd status: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}

	// Scale up: workers 0-3 untouched, 4-5 started.
	if r := ctl(t, e, d, "scale", "6"); r.Code != 0 {
		t.Fatalf("mrtd scale 6: %d %q", r.Code, r.Stderr)
	}
	after := waitRunning(t, e, d, 6)
	for w, pid := range before {
		if after[w] != pid {
			t.Errorf("worker %d changed pid %d -> %d on scale up", w, pid, after[w])
		}
	}
	// Scale down: 0-1 untouched, 2-5 stopped and gone.
	if r := ctl(t, e, d, "scale", "2"); r.Code != 0 {
		t.Fatalf("mrtd scale 2: %d %q", r.Code, r.Stderr)
	}
	down := waitRunning(t, e, d, 2)
	for w := 0; w < 2; w++ {
		if down[w] != before[w] {
			t.Errorf("worker %d changed pid on scale down", w)
		}
	}
	for w := 2; w < 6; w++ {
		if mrtdtest.Alive(after[w]) {
			t.Errorf("worker %d (pid %d) still runs after scale 2", w, after[w])
		}
	}

	// Restart one worker: a new pid for it only.
	if r := ctl(t, e, d, "restart", "1"); r.Code != 0 {
		t.Fatalf("mrtd restart 1: %d %q", r.Code, r.Stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp := statusJSON(t, e, d)
		if len(resp.Workers) == 2 && resp.Workers[1].State == "running" && resp.Workers[1].Pid != before[1] {
			if resp.Workers[1].Restarts != 1 || resp.Workers[0].Pid != before[0] {
				t.Fatalf("after restart 1: %+v", resp.Workers)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker 1 was not replaced: %+v", resp.Workers)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Bad requests.
	if r := ctl(t, e, d, "restart", "9"); r.Code != 1 || !strings.Contains(r.Stderr, "no worker 9") {
		t.Errorf("restart 9: %d %q", r.Code, r.Stderr)
	}
	if r := ctl(t, e, d, "scale", "0"); r.Code != 1 || !strings.Contains(r.Stderr, "cannot scale to 0") {
		t.Errorf("scale 0: %d %q", r.Code, r.Stderr)
	}
	if r := ctl(t, e, d, "scale", "many"); r.Code != 2 {
		t.Errorf("scale many: %d %q", r.Code, r.Stderr)
	}

	// Another uid is refused (the tests' root is another uid when mrtd
	// runs as the unprivileged one).
	if e.Dropped {
		cmd := exec.CommandContext(context.Background(), e.Mrtd, "status", "--runtime-dir", d.Runtime)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "may not control") {
			t.Errorf("root's mrtd status: %v %q, want a refusal", err, out)
		}
	}
	if code := p.Terminate(t); code != 0 {
		t.Fatalf("mrtd exited %d", code)
	}
	if r := ctl(t, e, d, "status"); r.Code != 1 || !strings.Contains(r.Stderr, "no mrtd answers") {
		t.Errorf("status after stop: %d %q", r.Code, r.Stderr)
	}
	mrtdtest.AssertClean(t, d)
}
