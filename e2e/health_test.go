package e2e

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// healthCmd is the workers' health check in the tests: worker N is
// healthy until /srv/sick-N exists in the shared mount.
const healthCmd = `["/bin/probe", "healthy-unless", "/srv/sick-$MRTD_WORKER"]`

// TestUnhealthyWorkerIsRestarted: a worker whose health check starts
// failing is restarted with reason unhealthy, while its siblings keep their
// pids; READY=1 waits until every worker is healthy.
func TestUnhealthyWorkerIsRestarted(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	share := e.UserDir(t, "share")
	msgs := listenNotify(t, e)

	cmd := e.Command(context.Background(), e.Mrtd, d, e.DaemonArgs(d, "--workers", "3", "--mount", share+":/srv",
		"--health-cmd", healthCmd, "--health-interval", "200ms", "--health-retries", "2", "--health-timeout", "10s",
		"--", "/bin/probe", "pause")...)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+msgs.path)
	p := mrtdtest.StartCmd(t, cmd)
	pids := p.Running(t, 3)

	// READY=1 comes once all three are healthy, and says so.
	ready := msgs.wait(t, "READY=1")
	if !strings.Contains(ready, "STATUS=3/3 workers running, 3 healthy, 0 restarts") {
		t.Errorf("READY=1 came with %q, want all three healthy", ready)
	}
	p.WaitLog(t, `"msg":"worker healthy"`, 3)
	resp := statusJSON(t, e, d)
	for _, w := range resp.Workers {
		if w.Health == nil || w.Health.Status != "healthy" || w.Health.LastOutput != "ok" || w.Health.LastCheck.IsZero() {
			t.Fatalf("worker %d's health in status: %+v", w.Worker, w.Health)
		}
	}

	// Worker 1's check starts failing.
	sick := filepath.Join(share, "sick-1")
	if err := os.WriteFile(sick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for {
		ev := p.NextOf(t, "worker exited", "worker failed to start")
		if w := int(ev["worker"].(float64)); w != 1 {
			t.Fatalf("worker %d ended: %v", w, ev)
		}
		if ev["exitReason"] != "unhealthy" || !strings.HasPrefix(ev["exit"].(string), "unhealthy: 2 health checks in a row failed") {
			t.Fatalf("worker 1 ended with %v, want reason unhealthy", ev)
		}
		// Healthy until then: restarted at once.
		if ev["backoff"] != "0s" {
			t.Errorf("the unhealthy worker waits %v before its restart, want none", ev["backoff"])
		}
		break
	}
	// The failed checks were logged, the last with its output.
	if !strings.Contains(p.Log(), `"msg":"health check failed","instance":"mrtd","worker":1,"containerId":"mrtd-1","health":"unhealthy","exitCode":1,"output":"/srv/sick-1 exists","failingStreak":2`) {
		t.Errorf("no failed check of worker 1 with its output in the log:\n%s", p.Log())
	}
	os.Remove(sick)
	ev := p.Next(t, "worker running")
	if w := int(ev["worker"].(float64)); w != 1 || ev["restarts"].(float64) != 1 || int(ev["pid"].(float64)) == pids[1] {
		t.Fatalf("after the unhealthy worker: %v", ev)
	}
	p.WaitLog(t, `"msg":"worker healthy"`, 4)

	// The siblings were not touched.
	resp = statusJSON(t, e, d)
	for _, w := range resp.Workers {
		switch w.Worker {
		case 1:
			if w.Restarts != 1 || w.Reason != "unhealthy" || !strings.HasPrefix(w.LastExit, "unhealthy:") {
				t.Errorf("worker 1 in status: %+v", w)
			}
		default:
			if w.Pid != pids[w.Worker] || w.Restarts != 0 || w.State != "running" || !mrtdtest.Alive(w.Pid) {
				t.Errorf("worker %d: pid %d (was %d), %d restarts, %s", w.Worker, w.Pid, pids[w.Worker], w.Restarts, w.State)
			}
		}
	}
	if r := ctl(t, e, d, "status"); r.Code != 0 || !strings.Contains(r.Stdout, "HEALTH") ||
		!strings.Contains(r.Stdout, "unhealthy: 2 health checks in a row failed") || strings.Count(r.Stdout, " healthy ") != 3 {
		t.Errorf("mrtd status: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	p.StopCleanly(t, d)
}

// TestHealthCmdNotInRootfs: a check no worker could run is a usage error,
// before any worker starts.
func TestHealthCmdNotInRootfs(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	r := e.Run(t, d, e.DaemonArgs(d, "--workers", "1", "--health-cmd", "test -e /tmp/ok", "--", "/bin/probe", "pause")...)
	if r.Code != 2 || !strings.Contains(r.Stderr, "the rootfs has no /bin/sh: give the command as a JSON array") {
		t.Fatalf("mrtd with a shell health check and no shell: %d %q", r.Code, r.Stderr)
	}
	mrtdtest.AssertClean(t, d)
}

// notifySocket is a unixgram socket that stands in for systemd's.
type notifySocket struct {
	path string
	msgs chan string
	got  []string
}

// listenNotify opens a notify socket the daemon's user can send to.
func listenNotify(t *testing.T, e *mrtdtest.Env) *notifySocket {
	t.Helper()
	path := filepath.Join(e.UserDir(t, "notify"), "notify.sock")
	os.Remove(path) // left by an earlier -count run
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	os.Chmod(path, 0o777)
	s := &notifySocket{path: path, msgs: make(chan string, 1000)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(s.msgs)
				return
			}
			s.msgs <- string(buf[:n])
		}
	}()
	return s
}

// wait returns the next message holding substr.
func (s *notifySocket) wait(t *testing.T, substr string) string {
	t.Helper()
	timeout := time.NewTimer(mrtdtest.FollowTimeout)
	defer timeout.Stop()
	for {
		select {
		case m := <-s.msgs:
			s.got = append(s.got, m)
			if strings.Contains(m, substr) {
				return m
			}
		case <-timeout.C:
			t.Fatalf("no %q from mrtd; got %q", substr, s.got)
		}
	}
}
