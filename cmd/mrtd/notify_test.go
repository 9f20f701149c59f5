package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"context"

	"github.com/go-logr/logr"

	"github.com/mrt-project/mrt/pool"
)

// sent records what a notifier sends.
type sent struct {
	mu   sync.Mutex
	msgs []string
	ch   chan string
}

func newSent() *sent { return &sent{ch: make(chan string, 1000)} }

func (s *sent) send(m string) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	s.ch <- m
}

func (s *sent) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.msgs, "|")
}

func TestNotifierReadyAndStatus(t *testing.T) {
	s := newSent()
	n := newNotifier(logr.Discard(), 2)
	n.send = s.send
	ev := func(name string, state pool.State, restarts int) {
		n.event(pool.Event{Status: pool.Status{ContainerID: name, State: state, Restarts: restarts}})
	}
	ev("w-0", pool.Starting, 0)
	ev("w-1", pool.Starting, 0)
	ev("w-0", pool.Running, 0)
	if strings.Contains(s.all(), "READY=1") {
		t.Fatalf("READY before every worker runs: %s", s.all())
	}
	ev("w-1", pool.Running, 0)
	if !strings.Contains(s.all(), "READY=1\nSTATUS=2/2 workers running, 0 restarts") {
		t.Fatalf("want READY=1 with the status once both run: %q", s.all())
	}
	ev("w-1", pool.BackingOff, 0)
	ev("w-1", pool.Starting, 1)
	ev("w-1", pool.Running, 1)
	if n := strings.Count(s.all(), "READY=1"); n != 1 {
		t.Errorf("READY=1 sent %d times", n)
	}
	for _, want := range []string{"STATUS=1/2 workers running, 0 restarts", "STATUS=1/2 workers running, 1 restarts", "STATUS=2/2 workers running, 1 restarts"} {
		if !strings.Contains(s.all(), want) {
			t.Errorf("no %q in %q", want, s.all())
		}
	}
}

func TestNotifierWatchdog(t *testing.T) {
	const interval = 20 * time.Millisecond
	s := newSent()
	n := newNotifier(logr.Discard(), 1)
	n.send = s.send
	block := make(chan struct{})
	var blocked sync.Mutex
	wedged := false
	probe := func() {
		blocked.Lock()
		w := wedged
		blocked.Unlock()
		if w {
			<-block
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.watchdog(ctx, interval, probe); close(done) }()

	for i := 0; i < 3; i++ {
		waitFor(t, s.ch, "WATCHDOG=1")
	}
	// Wedge the supervisor: the pings stop.
	blocked.Lock()
	wedged = true
	blocked.Unlock()
	time.Sleep(3 * interval) // let a ping already under way arrive
	drain(s.ch)
	time.Sleep(10 * interval)
	if m := drain(s.ch); m != 0 {
		t.Fatalf("%d pings while the supervisor was wedged", m)
	}
	// It answers again: so do the pings.
	blocked.Lock()
	wedged = false
	blocked.Unlock()
	close(block)
	waitFor(t, s.ch, "WATCHDOG=1")
	cancel()
	<-done
}

func waitFor(t *testing.T, ch chan string, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-ch:
			if m == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q", want)
		}
	}
}

func drain(ch chan string) int {
	n := 0
	for {
		select {
		case <-ch:
			n++
		default:
			return n
		}
	}
}

// TestPoolNotifiesSystemd runs the pool under the notify protocol against a
// real unixgram socket, as systemd would open it.
func TestPoolNotifiesSystemd(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	sockPath := filepath.Join(e.userDir(t, "notify"), "notify.sock")
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

	cmd := e.command(context.Background(), e.mrtd, d, e.daemonArgs(d, "--workers", "3", "--", "/bin/probe", "pause")...)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=200000")
	p := e.startCmd(t, cmd)
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
				p.waitLog(t, `"msg":"worker running"`, 3)
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
	// A reload: RELOADING=1 with MONOTONIC_USEC, then READY=1.
	p.cmd.Process.Signal(syscall.SIGHUP)
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
	p.cmd.Process.Signal(syscall.SIGTERM)
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
	p.stopCleanly(t, d)
}

// TestNotifySocketStaysOutside checks NOTIFY_SOCKET reaches neither runc
// nor a container.
func TestNotifySocketStaysOutside(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	cmd := e.command(context.Background(), e.mrtd, d, e.daemonArgs(d, "--workers", "1", "--", "/bin/probe", "cat", "/proc/self/environ")...)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET=/nonexistent/notify.sock")
	p := e.startCmd(t, cmd)
	ev := p.next(t, "output")
	if env := ev["line"].(string); strings.Contains(env, "NOTIFY_SOCKET") || !strings.Contains(env, "MRTD_WORKER=0") {
		t.Fatalf("container environment %q", env)
	}
	p.stop(t)
	assertClean(t, d)
}
