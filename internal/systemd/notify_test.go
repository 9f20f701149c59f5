package systemd

import (
	"errors"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

// sent records what a Notifier sends, in place of sd_notify.
type sent struct {
	mu   sync.Mutex
	msgs []string
	ch   chan string
	err  error // returned by send while set
}

func newSent() *sent { return &sent{ch: make(chan string, 1000)} }

func (s *sent) send(m string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false, s.err
	}
	s.msgs = append(s.msgs, m)
	s.ch <- m
	return true, nil
}

func (s *sent) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// last is the last message sent, or "".
func (s *sent) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		return ""
	}
	return s.msgs[len(s.msgs)-1]
}

func (s *sent) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.msgs, "|")
}

// logged records what a logr.Logger logs, one formatted line per call.
type logged struct {
	mu    sync.Mutex
	lines []string
}

func newLogged() (*logged, logr.Logger) {
	l := &logged{}
	return l, funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, args)
		l.mu.Unlock()
	}, funcr.Options{})
}

// count is how many lines contain s.
func (l *logged) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

func (l *logged) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// testNotifier is a Notifier for desired workers that sends to the returned
// sent.
func testNotifier(log logr.Logger, desired int) (*Notifier, *sent) {
	s := newSent()
	n := NewNotifier(log, desired)
	n.send = s.send
	return n, s
}

func TestNotifierReadyAndStatus(t *testing.T) {
	t.Parallel()
	n, s := testNotifier(logr.Discard(), 2)
	n.Worker("w-0", WorkerStarting)
	n.Worker("w-1", WorkerStarting)
	n.Worker("w-0", WorkerRunning)
	if strings.Contains(s.all(), "READY=1") {
		t.Fatalf("READY before every worker runs: %q", s.all())
	}
	n.Worker("w-1", WorkerRunning)
	if !strings.Contains(s.all(), "READY=1\nSTATUS=2/2 workers running, 0 restarts\n") {
		t.Fatalf("want READY=1 with the status once both run: %q", s.all())
	}
	n.Worker("w-1", WorkerDown)
	n.Worker("w-1", WorkerRestarting)
	n.Worker("w-1", WorkerRunning)
	if c := strings.Count(s.all(), "READY=1"); c != 1 {
		t.Errorf("READY=1 sent %d times: %q", c, s.all())
	}
	want := []string{
		"STATUS=0/2 workers running, 0 restarts\n",
		"STATUS=1/2 workers running, 0 restarts\n",
		"READY=1\nSTATUS=2/2 workers running, 0 restarts\n",
		"STATUS=1/2 workers running, 0 restarts\n",
		"STATUS=1/2 workers running, 1 restarts\n",
		"STATUS=2/2 workers running, 1 restarts\n",
	}
	if got := s.all(); got != strings.Join(want, "|") {
		t.Errorf("sent\n%q\nwant\n%q", got, strings.Join(want, "|"))
	}
}

// TestNotifierReadyWhenAWorkerCannotStart: READY=1 comes once every worker
// had its first attempt, with a status that says how many run.
func TestNotifierReadyWhenAWorkerCannotStart(t *testing.T) {
	t.Parallel()
	n, s := testNotifier(logr.Discard(), 2)
	n.Worker("w-0", WorkerStarting)
	n.Worker("w-1", WorkerStarting)
	n.Worker("w-1", WorkerDown) // its start failed
	if strings.Contains(s.all(), "READY=1") {
		t.Fatalf("READY before worker 0's first attempt: %q", s.all())
	}
	n.Worker("w-0", WorkerRunning)
	if !strings.Contains(s.all(), "READY=1\nSTATUS=1/2 workers running, 0 restarts\n") {
		t.Fatalf("want READY=1 with 1/2 running once both tried: %q", s.all())
	}
}

// TestNotifierStatusOnlyWhenItChanges: a state that changes no count sends
// nothing.
func TestNotifierStatusOnlyWhenItChanges(t *testing.T) {
	t.Parallel()
	n, s := testNotifier(logr.Discard(), 1)
	n.Worker("w-0", WorkerStarting)
	n.Worker("w-0", WorkerRunning)
	before := s.all()
	n.Worker("w-0", WorkerRunning)
	if got := s.all(); got != before {
		t.Fatalf("a repeated state sent %q", strings.TrimPrefix(got, before))
	}
}

func TestNotifierSetDesired(t *testing.T) {
	t.Parallel()
	n, s := testNotifier(logr.Discard(), 1)
	n.Worker("w-0", WorkerStarting)
	n.Worker("w-0", WorkerRunning)
	n.SetDesired(3)
	if last := s.last(); last != "STATUS=1/3 workers running, 0 restarts\n" {
		t.Fatalf("SetDesired(3) sent %q", last)
	}
	n.Worker("w-1", WorkerStarting)
	n.Worker("w-1", WorkerRunning)
	if last := s.last(); last != "STATUS=2/3 workers running, 0 restarts\n" {
		t.Fatalf("a scaled-up worker's start sent %q", last)
	}
}

func TestNotifierReload(t *testing.T) {
	t.Parallel()
	n, s := testNotifier(logr.Discard(), 1)
	n.Worker("w-0", WorkerStarting)
	n.Worker("w-0", WorkerRunning)
	n.Reloading()
	if m := s.last(); !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[0-9]+\n$`).MatchString(m) {
		t.Fatalf("Reloading sent %q, want RELOADING=1 and MONOTONIC_USEC", m)
	}
	n.Reloaded()
	if m := s.last(); m != "READY=1\nSTATUS=1/1 workers running, 0 restarts\n" {
		t.Fatalf("Reloaded sent %q, want READY=1 with the status", m)
	}
}

// TestNotifierStoppingExtendsTimeout: STOPPING=1 asks systemd for the stop
// timeout and a margin, beyond the unit's TimeoutStopSec.
func TestNotifierStoppingExtendsTimeout(t *testing.T) {
	t.Parallel()
	n, s := testNotifier(logr.Discard(), 1)
	n.Stopping(45 * time.Second)
	if want := "STOPPING=1\nEXTEND_TIMEOUT_USEC=60000000\nSTATUS=stopping workers\n"; s.all() != want {
		t.Fatalf("sent %q, want %q", s.all(), want)
	}
}

// TestNotifierLogsFailureOnce: a run of failed sends is logged once, and the
// send that works again says how many failed.
func TestNotifierLogsFailureOnce(t *testing.T) {
	t.Parallel()
	logs, log := newLogged()
	n, s := testNotifier(log, 1)
	s.setErr(errors.New("connection refused"))
	n.Worker("w-0", WorkerStarting)
	n.Worker("w-0", WorkerRunning)
	n.Stopping(time.Second)
	if c := logs.count("notifying systemd failed"); c != 1 || logs.count("connection refused") != 1 {
		t.Fatalf("3 failed sends logged %d times, want once with the error:\n%s", c, logs.all())
	}
	s.setErr(nil)
	n.SetDesired(2)
	if c := logs.count(`"msg"="notifying systemd works again" "failures"=3`); c != 1 {
		t.Fatalf("want one line saying the sends work again after 3 failures:\n%s", logs.all())
	}
	n.SetDesired(3)
	if c := logs.count("notifying systemd"); c != 2 {
		t.Fatalf("sends that work logged again:\n%s", logs.all())
	}
	// A new run of failures is logged again, once.
	s.setErr(errors.New("no buffer space"))
	n.SetDesired(4)
	n.SetDesired(5)
	if c := logs.count("notifying systemd failed"); c != 2 || logs.count("no buffer space") != 1 {
		t.Fatalf("a second run of failures: want one more line:\n%s", logs.all())
	}
}

// TestNotifierSendsToNotifySocket goes through go-systemd's SdNotify to a
// real socket, as systemd opens it, then to one that is gone.
func TestNotifierSendsToNotifySocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	if !NotifyEnabled() {
		t.Fatal("NotifyEnabled false with NOTIFY_SOCKET set")
	}
	logs, log := newLogged()
	n := NewNotifier(log, 1)
	n.Stopping(time.Second)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	m, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(buf[:m]), "STOPPING=1\nEXTEND_TIMEOUT_USEC=16000000\nSTATUS=stopping workers\n"; got != want {
		t.Fatalf("socket got %q, want %q", got, want)
	}

	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	n.SetDesired(2)
	n.SetDesired(3)
	if c := logs.count("notifying systemd failed"); c != 1 {
		t.Fatalf("2 sends to a missing socket logged %d times, want 1:\n%s", c, logs.all())
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if NotifyEnabled() {
		t.Fatal("NotifyEnabled true without NOTIFY_SOCKET")
	}
	n.SetDesired(4) // not under systemd: neither a failure nor a recovery
	if logs.count("notifying systemd") != 1 {
		t.Fatalf("a send without NOTIFY_SOCKET logged:\n%s", logs.all())
	}
}

func TestWorkerStateString(t *testing.T) {
	t.Parallel()
	for s, want := range map[WorkerState]string{
		WorkerStarting: "starting", WorkerRestarting: "restarting", WorkerRunning: "running",
		WorkerDown: "down", WorkerState(9): "WorkerState(9)",
	} {
		if got := s.String(); got != want {
			t.Errorf("WorkerState(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}
