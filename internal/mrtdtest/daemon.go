package mrtdtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Daemon is one running mrtd whose JSON log, on its stderr, is followed.
type Daemon struct {
	// Pid is mrtd's process id.
	Pid int
	// Started is when the process was started (just before fork).
	Started time.Time

	cmd  *exec.Cmd
	log  *os.File // the read end of mrtd's stderr
	opts Options

	mu      sync.Mutex
	st      State
	lines   []string      // every line, when opts.Keep
	events  []Event       // every JSON line, when opts.Keep
	next    int           // the first event Next has not looked at
	changed chan struct{} // closed and replaced on every line

	readDone chan struct{}
	exited   chan struct{}
	waitErr  error
}

// Options say what Start keeps of mrtd's log.
type Options struct {
	// CopyTo receives every line of mrtd's stderr, when not nil.
	CopyTo io.Writer
	// Keep keeps every line and event, for Log, Lines and Next. Tests set
	// it; a long soak, which copies the log to a file, does not.
	Keep bool
}

// State is what mrtd's log said so far.
type State struct {
	// Pids is the container init of each running worker, by index.
	Pids map[int]int
	// Restarts is each worker's restart count from its last event.
	Restarts map[int]int
	// Backoff is the delay each worker's last exit logged.
	Backoff map[int]time.Duration
	// RunningEvents counts "worker running" events.
	RunningEvents int
	// Exits counts "worker exited" and "worker failed to start" events.
	Exits int
	// Last is when the latest event was read.
	Last time.Time
	// AllPids is every container init pid logged, in order.
	AllPids []int
	// Problems are the last error lines, and lines that are not JSON.
	Problems []string
	// Statuses counts the "status" lines mrtd logs on SIGUSR1, and
	// LastStatus is the latest.
	Statuses   int
	LastStatus Status
}

// Status is mrtd's own counts, as it logs them on SIGUSR1.
type Status struct {
	Goroutines, OpenFDs int
}

// Running is how many workers run.
func (s *State) Running() int { return len(s.Pids) }

// Event is one line of mrtd's JSON log, as tests read it: numbers are
// float64, as encoding/json decodes them.
type Event map[string]any

// logEntry is what State is made of in one line of mrtd's log.
type logEntry struct {
	Level       string `json:"level"`
	Msg         string `json:"msg"`
	Worker      *int   `json:"worker"`
	ContainerID string `json:"containerId"`
	Restarts    int    `json:"restarts"`
	Pid         int    `json:"pid"`
	Exit        string `json:"exit"`
	Reason      string `json:"reason"`
	Backoff     string `json:"backoff"`
	Error       string `json:"error"`
	Goroutines  *int   `json:"goroutines"`
	OpenFDs     *int   `json:"openFds"`
}

// Command is mrtd as the tools run it: bin with args (the pool's flags and
// command), stdin from /dev/null, stdout discarded, in its own process
// group, with SIGTERM as its parent-death signal.
func Command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	return cmd
}

// Start starts cmd, a prepared mrtd whose stderr is not set, and follows
// its log. Its exit is waited for at once: use Exited, Wait or Err, never
// cmd.Wait.
func Start(cmd *exec.Cmd, opts Options) (*Daemon, error) {
	if cmd.Stderr != nil {
		return nil, errors.New("mrtdtest.Start: the command's stderr is set already")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = w
	d := &Daemon{
		cmd:      cmd,
		log:      r,
		opts:     opts,
		st:       State{Pids: map[int]int{}, Restarts: map[int]int{}, Backoff: map[int]time.Duration{}},
		changed:  make(chan struct{}),
		readDone: make(chan struct{}),
		exited:   make(chan struct{}),
	}
	d.Started = time.Now()
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	w.Close()
	d.Pid = cmd.Process.Pid
	go d.read()
	go func() {
		d.waitErr = cmd.Wait()
		close(d.exited)
	}()
	return d, nil
}

func (d *Daemon) read() {
	defer close(d.readDone)
	defer d.log.Close()
	br := bufio.NewReaderSize(d.log, 256<<10)
	for {
		line, err := br.ReadBytes('\n')
		now := time.Now()
		if len(bytes.TrimSpace(line)) > 0 {
			if d.opts.CopyTo != nil {
				d.opts.CopyTo.Write(line)
			}
			d.event(bytes.TrimRight(line, "\n"), now)
		}
		if err != nil {
			return
		}
	}
}

func (d *Daemon) event(line []byte, now time.Time) {
	var e logEntry
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opts.Keep {
		d.lines = append(d.lines, string(line))
		var ev Event
		if json.Unmarshal(line, &ev) == nil {
			d.events = append(d.events, ev)
		}
	}
	line = bytes.TrimSpace(line)
	st := &d.st
	problem := func(s string) {
		st.Problems = append(st.Problems, s)
		if len(st.Problems) > 20 {
			st.Problems = st.Problems[1:]
		}
	}
	if err := json.Unmarshal(line, &e); err != nil {
		problem(string(line))
	} else {
		if e.Level == "error" || e.Level == "fatal" {
			problem(string(line))
		}
		if e.Msg == "status" && e.Goroutines != nil {
			st.Statuses++
			st.LastStatus = Status{Goroutines: *e.Goroutines}
			if e.OpenFDs != nil {
				st.LastStatus.OpenFDs = *e.OpenFDs
			}
		}
		if e.Worker != nil {
			w := *e.Worker
			switch e.Msg {
			case "worker running":
				st.Pids[w] = e.Pid
				st.Restarts[w] = e.Restarts
				st.RunningEvents++
				st.AllPids = append(st.AllPids, e.Pid)
			case "worker exited", "worker failed to start":
				delete(st.Pids, w)
				st.Restarts[w] = e.Restarts
				st.Exits++
				if b, err := time.ParseDuration(e.Backoff); err == nil {
					st.Backoff[w] = b
				}
			case "worker cannot run", "worker stopped":
				delete(st.Pids, w)
			}
		}
	}
	st.Last = now
	close(d.changed)
	d.changed = make(chan struct{})
}

// Snapshot returns a copy of the state.
func (d *Daemon) Snapshot() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.st
	s.Pids = cloneMap(d.st.Pids)
	s.Restarts = cloneMap(d.st.Restarts)
	s.Backoff = make(map[int]time.Duration, len(d.st.Backoff))
	for k, v := range d.st.Backoff {
		s.Backoff[k] = v
	}
	s.AllPids = append([]int(nil), d.st.AllPids...)
	s.Problems = append([]string(nil), d.st.Problems...)
	return s
}

func cloneMap(m map[int]int) map[int]int {
	c := make(map[int]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// ErrTimeout is returned by the waits of Daemon when what they wait for
// did not come in time.
var ErrTimeout = errors.New("timed out")

// errLogEnded is returned by the waits of Daemon when the log ended first.
var errLogEnded = errors.New("the log ended")

// await calls check, under d.mu, now and after each line, until it is
// true. It fails when timeout passes or the log ends first.
func (d *Daemon) await(timeout time.Duration, check func() bool) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for ended := false; ; {
		d.mu.Lock()
		ok, ch := check(), d.changed
		d.mu.Unlock()
		switch {
		case ok:
			return nil
		case ended:
			return errLogEnded
		}
		select {
		case <-ch:
		case <-d.readDone:
			ended = true // one last look
		case <-t.C:
			return fmt.Errorf("%w after %v", ErrTimeout, timeout)
		}
	}
}

// WaitFor waits until cond, called with the state after each event, is
// true, and returns when the event that made it true was read (the latest
// event's time when it is true already). It fails when timeout passes or
// mrtd exits first.
func (d *Daemon) WaitFor(timeout time.Duration, cond func(*State) bool) (time.Time, error) {
	var at time.Time
	err := d.await(timeout, func() bool {
		at = d.st.Last
		return cond(&d.st)
	})
	if errors.Is(err, errLogEnded) {
		<-d.exited
		return time.Time{}, fmt.Errorf("mrtd exited (%v)%s", d.waitErr, d.problems())
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%w%s", err, d.problems())
	}
	return at, nil
}

func (d *Daemon) problems() string {
	st := d.Snapshot()
	if len(st.Problems) == 0 {
		return ""
	}
	return ": " + strings.Join(st.Problems, "; ")
}

// NextEvent returns the next event, after those it or Next returned or
// skipped before, whose message is one of msgs. It needs Options.Keep.
func (d *Daemon) NextEvent(timeout time.Duration, msgs ...string) (Event, error) {
	if !d.opts.Keep {
		return nil, errors.New("mrtdtest: NextEvent needs Options.Keep")
	}
	var found Event
	err := d.await(timeout, func() bool {
		for d.next < len(d.events) {
			ev := d.events[d.next]
			d.next++
			if msg, _ := ev["msg"].(string); slices.Contains(msgs, msg) {
				found = ev
				return true
			}
		}
		return false
	})
	return found, err
}

// Log returns every line mrtd logged so far (with Options.Keep).
func (d *Daemon) Log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n")
}

// Lines returns every line mrtd logged so far (with Options.Keep).
func (d *Daemon) Lines() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.lines)
}

// HasStatus reports whether the mrtd binary logs its status on SIGUSR1, as
// its --help says (to any other Go program, SIGUSR1 is fatal).
func HasStatus(bin string) bool {
	out, _ := exec.Command(bin, "--workers", "1", "--help").CombinedOutput()
	return bytes.Contains(out, []byte("SIGUSR1"))
}

// QueryStatus sends SIGUSR1 and waits for the status line it makes mrtd
// log. Use it only when HasStatus.
func (d *Daemon) QueryStatus(timeout time.Duration) (Status, error) {
	before := d.Snapshot().Statuses
	if err := d.Signal(syscall.SIGUSR1); err != nil {
		return Status{}, err
	}
	if _, err := d.WaitFor(timeout, func(s *State) bool { return s.Statuses > before }); err != nil {
		return Status{}, fmt.Errorf("no status line after SIGUSR1: %w", err)
	}
	return d.Snapshot().LastStatus, nil
}

// Exited is closed once mrtd has exited and been waited for.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Signal sends sig to mrtd, unless it has exited already.
func (d *Daemon) Signal(sig syscall.Signal) error {
	select {
	case <-d.exited:
		return os.ErrProcessDone
	default:
	}
	return d.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits for mrtd to exit, and for its log to end;
// after timeout it sends SIGKILL. It returns mrtd's exit error (nil for
// exit status 0), or an error saying it had to be killed.
func (d *Daemon) Stop(timeout time.Duration) error {
	d.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-d.exited:
	case <-t.C:
		d.Signal(syscall.SIGKILL)
		<-d.exited
		d.waitLog()
		return fmt.Errorf("mrtd did not stop within %v of SIGTERM: killed", timeout)
	}
	d.waitLog()
	return d.waitErr
}

// Wait waits up to timeout for mrtd to exit, and for its log to end, and
// returns its exit error (nil for exit status 0). It does not stop mrtd.
func (d *Daemon) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-d.exited:
	case <-t.C:
		return fmt.Errorf("mrtd still runs: %w after %v", ErrTimeout, timeout)
	}
	d.waitLog()
	return d.waitErr
}

// waitLog waits a little for the end of the log: a process that inherited
// mrtd's stderr could keep the pipe open.
func (d *Daemon) waitLog() {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-d.readDone:
	case <-t.C:
	}
}

// Err waits for mrtd to exit, and a little for its log to end, and
// returns its exit error.
func (d *Daemon) Err() error {
	<-d.exited
	d.waitLog()
	return d.waitErr
}

// CloseLog closes the read end of mrtd's stderr, as a log reader that goes
// away would, and returns once the follower has stopped.
func (d *Daemon) CloseLog() {
	d.log.Close()
	<-d.readDone
}

// ---- for tests ----

// FollowTimeout bounds each wait of the test methods below.
const FollowTimeout = 30 * time.Second

// Next returns the next event with message msg, skipping others.
func (d *Daemon) Next(t testing.TB, msg string) Event {
	t.Helper()
	ev, err := d.NextEvent(FollowTimeout, msg)
	if err != nil {
		t.Fatalf("no %q in the log (%v):\n%s", msg, err, d.Log())
	}
	return ev
}

// NextOf returns the next event with one of msgs.
func (d *Daemon) NextOf(t testing.TB, msgs ...string) Event {
	t.Helper()
	ev, err := d.NextEvent(FollowTimeout, msgs...)
	if err != nil {
		t.Fatalf("none of %q in the log (%v):\n%s", msgs, err, d.Log())
	}
	return ev
}

// WaitLog waits until the log holds at least n occurrences of substr.
func (d *Daemon) WaitLog(t testing.TB, substr string, n int) {
	t.Helper()
	err := d.await(FollowTimeout, func() bool {
		return strings.Count(strings.Join(d.lines, "\n"), substr) >= n
	})
	if err != nil {
		t.Fatalf("waiting for %d of %q in the log (%v):\n%s", n, substr, err, d.Log())
	}
}

// Ready waits until n containers in all printed "ready" (the probe's
// pause does, once its signal handlers are installed).
func (d *Daemon) Ready(t testing.TB, n int) {
	t.Helper()
	d.WaitLog(t, `"line":"ready"`, n)
}

// Running waits for n "worker running" events and returns pid by worker.
func (d *Daemon) Running(t testing.TB, n int) map[int]int {
	t.Helper()
	pids := map[int]int{}
	for len(pids) < n {
		ev := d.Next(t, "worker running")
		pids[int(ev["worker"].(float64))] = int(ev["pid"].(float64))
	}
	return pids
}

// Goroutines asks mrtd for its status with SIGUSR1 and returns its
// goroutine count.
func (d *Daemon) Goroutines(t testing.TB) int {
	t.Helper()
	d.Signal(syscall.SIGUSR1)
	return int(d.Next(t, "status")["goroutines"].(float64))
}

// stopLimit bounds Terminate: every stop timeout the tests give is far
// shorter.
const stopLimit = time.Minute

// Terminate sends SIGTERM (unless mrtd has exited already) and returns
// mrtd's exit status; mrtd that is still running after a minute is
// killed and t fails.
func (d *Daemon) Terminate(t testing.TB) int {
	t.Helper()
	if err := d.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	err := d.Wait(stopLimit)
	if errors.Is(err, ErrTimeout) {
		d.Signal(syscall.SIGKILL)
		t.Fatalf("mrtd did not stop within %v of SIGTERM:\n%s", stopLimit, d.Log())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// StopCleanly stops mrtd, which must exit 0 and leave no container or
// bundle behind in d.
func (d *Daemon) StopCleanly(t testing.TB, dirs Dirs) {
	t.Helper()
	if code := d.Terminate(t); code != 0 {
		t.Fatalf("mrtd exited %d", code)
	}
	AssertClean(t, dirs)
}
