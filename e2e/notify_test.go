package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// TestPoolNotifiesSystemd runs the pool under the notify protocol against a
// real unixgram socket, as systemd would open it.
func TestPoolNotifiesSystemd(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	sockPath := filepath.Join(e.UserDir(t, "notify"), "notify.sock")
	os.Remove(sockPath) // left by an earlier -count run
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	os.Chmod(sockPath, 0o777)
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()

	cmd := e.Command(context.Background(), e.Mrtd, d, e.DaemonArgs(d, "--workers", "3", "--", "/bin/probe", "pause")...)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=200000")
	p := mrtdtest.StartCmd(t, cmd)
	var got []string
	readyAt := -1
	for readyAt < 0 {
		select {
		case m := <-msgs:
			got = append(got, m)
			if strings.Contains(m, "READY=1") {
				readyAt = len(got)
				// The pool logs each start before the notifier hears of
				// it; the log reaches this test on its own pipe, later.
				p.WaitLog(t, `"msg":"worker running"`, 3)
				if !strings.Contains(m, "STATUS=3/3 workers running, 0 restarts") {
					t.Errorf("READY=1 came with %q", m)
				}
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no READY=1; got %q", got)
		}
	}
	for pings := 0; pings < 3; {
		select {
		case m := <-msgs:
			if m == "WATCHDOG=1" {
				pings++
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no watchdog pings")
		}
	}
	// A worker killed twice: restarted, the second time in its second
	// container id, and to systemd still one of the 3 workers.
	for restarts := 1; restarts <= 2; restarts++ {
		pid := p.Snapshot().Pids[1]
		syscall.Kill(pid, syscall.SIGKILL)
		want := fmt.Sprintf("STATUS=3/3 workers running, %d restarts", restarts)
		for seen := false; !seen; {
			select {
			case m := <-msgs:
				if strings.Contains(m, "STATUS=4/3") {
					t.Errorf("a restarted worker counted twice: %q", m)
				}
				seen = strings.Contains(m, want)
			case <-time.After(30 * time.Second):
				t.Fatalf("no %q after killing worker 1", want)
			}
		}
		p.WaitLog(t, `"msg":"worker running"`, 3+restarts)
	}
	// A reload: RELOADING=1 with MONOTONIC_USEC, then READY=1.
	p.Signal(syscall.SIGHUP)
	for phase := 0; phase < 2; {
		select {
		case m := <-msgs:
			if phase == 0 && strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
				phase = 1
			} else if phase == 1 && strings.HasPrefix(m, "READY=1") {
				phase = 2
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no RELOADING=1 then READY=1 after SIGHUP")
		}
	}
	p.Signal(syscall.SIGTERM)
	for stopping := false; !stopping; {
		select {
		case m := <-msgs:
			stopping = strings.Contains(m, "STOPPING=1")
			// daemonArgs' --stop-timeout 3s, plus the margin.
			if stopping && !strings.Contains(m, "EXTEND_TIMEOUT_USEC=18000000\n") {
				t.Errorf("STOPPING=1 came with %q, want EXTEND_TIMEOUT_USEC for the stop timeout", m)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no STOPPING=1")
		}
	}
	p.StopCleanly(t, d)
}

// TestNotifySocketStaysOutside checks NOTIFY_SOCKET reaches neither runc
// nor a container.
func TestNotifySocketStaysOutside(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	cmd := e.Command(context.Background(), e.Mrtd, d, e.DaemonArgs(d, "--workers", "1", "--", "/bin/probe", "cat", "/proc/self/environ")...)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET=/nonexistent/notify.sock")
	p := mrtdtest.StartCmd(t, cmd)
	ev := p.Next(t, "output")
	if env := ev["line"].(string); strings.Contains(env, "NOTIFY_SOCKET") || !strings.Contains(env, "MRTD_WORKER=0") {
		t.Fatalf("container environment %q", env)
	}
	p.Terminate(t)
	mrtdtest.AssertClean(t, d)
}
