// Package mrtdtest runs `mrtd --workers N` for the bench and soak tools: it
// follows the pool's JSON log on mrtd's stderr (which worker runs which
// container init, restarts, exits), stops mrtd, and reads what /proc says
// about it (CPU time, PSS, open fds, children, resident runc processes).
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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Daemon is one running `mrtd` pool.
type Daemon struct {
	// Pid is mrtd's process id.
	Pid int
	// Started is when the process was started (just before fork).
	Started time.Time

	cmd *exec.Cmd

	mu      sync.Mutex
	st      State
	changed chan struct{} // closed and replaced on every event

	readDone chan struct{}
	exited   chan struct{}
	waitErr  error
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

// Event is one line of mrtd's JSON log.
type Event struct {
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

// Start starts bin with args (the pool's flags and command), stdin from
// /dev/null, stdout discarded, in its own process group, with SIGTERM as
// its parent-death signal. Every line of its stderr is also copied to
// copyTo when it is not nil.
func Start(bin string, args []string, copyTo io.Writer) (*Daemon, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	d := &Daemon{
		cmd:      cmd,
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
	go d.read(r, copyTo)
	go func() {
		d.waitErr = cmd.Wait()
		close(d.exited)
	}()
	return d, nil
}

func (d *Daemon) read(r *os.File, copyTo io.Writer) {
	defer close(d.readDone)
	defer r.Close()
	br := bufio.NewReaderSize(r, 256<<10)
	for {
		line, err := br.ReadBytes('\n')
		now := time.Now()
		if len(bytes.TrimSpace(line)) > 0 {
			if copyTo != nil {
				copyTo.Write(line)
			}
			d.event(bytes.TrimSpace(line), now)
		}
		if err != nil {
			return
		}
	}
}

func (d *Daemon) event(line []byte, now time.Time) {
	var e Event
	d.mu.Lock()
	defer d.mu.Unlock()
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

// ErrTimeout is returned by WaitFor when the condition did not come true
// in time.
var ErrTimeout = errors.New("timed out")

// WaitFor waits until cond, called with the state after each event, is
// true, and returns when the event that made it true was read (the latest
// event's time when it is true already). It fails when timeout passes or
// mrtd exits first.
func (d *Daemon) WaitFor(timeout time.Duration, cond func(*State) bool) (time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		d.mu.Lock()
		if cond(&d.st) {
			at := d.st.Last
			d.mu.Unlock()
			return at, nil
		}
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-d.readDone:
			// No more events: one last look.
			d.mu.Lock()
			ok, at := cond(&d.st), d.st.Last
			d.mu.Unlock()
			if ok {
				return at, nil
			}
			<-d.exited
			return time.Time{}, fmt.Errorf("mrtd exited (%v)%s", d.waitErr, d.problems())
		case <-t.C:
			return time.Time{}, fmt.Errorf("%w after %v%s", ErrTimeout, timeout, d.problems())
		}
	}
}

func (d *Daemon) problems() string {
	st := d.Snapshot()
	if len(st.Problems) == 0 {
		return ""
	}
	return ": " + strings.Join(st.Problems, "; ")
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

// waitLog waits a little for the end of the log: a process that inherited
// mrtd's stderr could keep the pipe open.
func (d *Daemon) waitLog() {
	select {
	case <-d.readDone:
	case <-time.After(2 * time.Second):
	}
}

// Err is mrtd's exit error once it has exited.
func (d *Daemon) Err() error {
	<-d.exited
	return d.waitErr
}

// ---- /proc ----

// ClockTicks is USER_HZ, the unit of /proc/<pid>/stat times (sysconf
// _SC_CLK_TCK), which is 100 on every Linux architecture Go supports.
const ClockTicks = 100

// Proc is one line of /proc/<pid>/stat.
type Proc struct {
	Pid, PPid    int
	State        byte
	Comm         string
	UTime, STime uint64 // clock ticks
}

// ReadProc parses /proc/<pid>/stat.
func ReadProc(pid int) (Proc, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Proc{}, err
	}
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return Proc{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[end+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return Proc{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	p := Proc{Pid: pid, Comm: string(data[open+1 : end]), State: f[0][0]}
	p.PPid, _ = strconv.Atoi(f[1])
	p.UTime, _ = strconv.ParseUint(f[11], 10, 64)
	p.STime, _ = strconv.ParseUint(f[12], 10, 64)
	return p, nil
}

// Procs returns every process on the host.
func Procs() []Proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := ReadProc(pid); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Children returns the processes whose parent is pid.
func Children(pid int) []Proc {
	var out []Proc
	for _, p := range Procs() {
		if p.PPid == pid {
			out = append(out, p)
		}
	}
	return out
}

// PSS is the proportional set size of pid, in bytes.
func PSS(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/smaps_rollup has no Pss line", pid)
}

// FDs counts the open file descriptors of pid.
func FDs(pid int) (int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(ents), err
}

// RuncProcesses returns the processes running one of the runc binaries
// given, or whose name starts with "runc" (runc's init stages are named
// runc:[0:PARENT], runc:[1:CHILD], runc:[2:INIT]; a binary named
// runc-<digest> shows as runc-<digest>, cut to 15 bytes).
func RuncProcesses(binaries ...string) []Proc {
	var ids []fileID
	for _, b := range binaries {
		if id, ok := statID(b); ok {
			ids = append(ids, id)
		}
	}
	var out []Proc
	for _, p := range Procs() {
		if strings.HasPrefix(p.Comm, "runc") {
			out = append(out, p)
			continue
		}
		if id, ok := statID(filepath.Join("/proc", strconv.Itoa(p.Pid), "exe")); ok {
			for _, want := range ids {
				if id == want {
					out = append(out, p)
					break
				}
			}
		}
	}
	return out
}

type fileID struct{ dev, ino uint64 }

func statID(p string) (fileID, bool) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), st.Ino}, true
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	p, err := ReadProc(pid)
	return err == nil && p.State != 'Z' && p.State != 'X'
}

// Cmdline returns pid's command line, its arguments joined by spaces.
func Cmdline(pid int) string {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
}

// ReapPid waits for pid, a child of this process (a subreaper), for up to
// timeout. It reports whether pid was reaped.
func ReapPid(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if got == pid {
			return true
		}
		if err != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// ReapAll reaps every exited child of this process, without blocking, and
// returns their pids. Call it only when no exec.Cmd is being waited for.
func ReapAll() []int {
	var pids []int
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return pids
		}
		pids = append(pids, pid)
	}
}

// SetSubreaper makes this process the reaper of its orphaned descendants:
// detached containers' inits, and those of an mrtd that died.
func SetSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}
