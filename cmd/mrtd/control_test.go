package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mrt-project/mrt/control"
)

// ctl runs `mrtd status|scale|restart` as the daemon's user.
func (e *integrationEnv) ctl(t *testing.T, d dirs, args ...string) result {
	t.Helper()
	return e.run(t, d, append(args, "--runtime-dir", d.runtime)...)
}

func (e *integrationEnv) statusJSON(t *testing.T, d dirs) control.Response {
	t.Helper()
	r := e.ctl(t, d, "status", "--json")
	var resp control.Response
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &resp) != nil {
		t.Fatalf("mrtd status --json: status %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	return resp
}

// waitRunning polls mrtd status until n workers run and returns their pids.
func (e *integrationEnv) waitRunning(t *testing.T, d dirs, n int) map[int]int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp := e.statusJSON(t, d)
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
	d := e.newDirs(t)
	p := e.startDaemon(t, d, e.daemonArgs(d, "--workers", "4", "--", "/bin/probe", "pause")...)
	p.running(t, 4) // the control socket exists before the first worker starts
	before := e.waitRunning(t, d, 4)

	r := e.ctl(t, d, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "WORKER  CONTAINER  STATE") || strings.Count(r.stdout, " running ") != 4 {
		t.Fatalf("mrtd status: %d %q %q", r.code, r.stdout, r.stderr)
	}

	// Scale up: workers 0-3 untouched, 4-5 started.
	if r := e.ctl(t, d, "scale", "6"); r.code != 0 {
		t.Fatalf("mrtd scale 6: %d %q", r.code, r.stderr)
	}
	after := e.waitRunning(t, d, 6)
	for w, pid := range before {
		if after[w] != pid {
			t.Errorf("worker %d changed pid %d -> %d on scale up", w, pid, after[w])
		}
	}
	// Scale down: 0-1 untouched, 2-5 stopped and gone.
	if r := e.ctl(t, d, "scale", "2"); r.code != 0 {
		t.Fatalf("mrtd scale 2: %d %q", r.code, r.stderr)
	}
	down := e.waitRunning(t, d, 2)
	for w := 0; w < 2; w++ {
		if down[w] != before[w] {
			t.Errorf("worker %d changed pid on scale down", w)
		}
	}
	for w := 2; w < 6; w++ {
		if alive(after[w]) {
			t.Errorf("worker %d (pid %d) still runs after scale 2", w, after[w])
		}
	}

	// Restart one worker: a new pid for it only.
	if r := e.ctl(t, d, "restart", "1"); r.code != 0 {
		t.Fatalf("mrtd restart 1: %d %q", r.code, r.stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp := e.statusJSON(t, d)
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
	if r := e.ctl(t, d, "restart", "9"); r.code != 1 || !strings.Contains(r.stderr, "no worker 9") {
		t.Errorf("restart 9: %d %q", r.code, r.stderr)
	}
	if r := e.ctl(t, d, "scale", "0"); r.code != 1 || !strings.Contains(r.stderr, "cannot scale to 0") {
		t.Errorf("scale 0: %d %q", r.code, r.stderr)
	}
	if r := e.ctl(t, d, "scale", "many"); r.code != 2 {
		t.Errorf("scale many: %d %q", r.code, r.stderr)
	}

	// Another uid is refused (the tests' root is another uid when mrtd
	// runs as the unprivileged one).
	if e.dropped {
		cmd := exec.CommandContext(context.Background(), e.mrtd, "status", "--runtime-dir", d.runtime)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "may not control") {
			t.Errorf("root's mrtd status: %v %q, want a refusal", err, out)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("mrtd exited %d", code)
	}
	if r := e.ctl(t, d, "status"); r.code != 1 || !strings.Contains(r.stderr, "no mrtd answers") {
		t.Errorf("status after stop: %d %q", r.code, r.stderr)
	}
	assertClean(t, d)
}
