package reaper

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// Exit is how a process ended.
type Exit struct {
	Pid    int
	Status unix.WaitStatus
	Time   time.Time
}

// Code is the exit status a shell would report: the exit code, or 128+N
// for a process killed by signal N.
func (e Exit) Code() int {
	if e.Status.Signaled() {
		return 128 + int(e.Status.Signal())
	}
	return e.Status.ExitStatus()
}

// unclaimedTTL is how long the exit of a process nobody waits for is kept:
// long enough for a container's init to be claimed after runc returns.
const unclaimedTTL = time.Minute

// Reaper reaps children and routes their exits.
type Reaper struct {
	mu        sync.Mutex
	waiters   map[int]chan Exit
	unclaimed map[int]Exit
	now       func() time.Time
}

// New returns a Reaper. Call Run to start reaping.
func New() *Reaper {
	return &Reaper{waiters: map[int]chan Exit{}, unclaimed: map[int]Exit{}, now: time.Now}
}

// SetSubreaper makes this process the reaper of its orphaned descendants.
func SetSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// Run reaps children on SIGCHLD until ctx is cancelled.
func (r *Reaper) Run(ctx context.Context) error {
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	r.reap() // children that exited before Notify
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sigs:
			r.reap()
		}
	}
}

// reap collects every exited child.
func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.route(Exit{Pid: pid, Status: ws, Time: r.now()})
	}
}

func (r *Reaper) route(e Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.waiters[e.Pid]; ok {
		delete(r.waiters, e.Pid)
		ch <- e
		return
	}
	for pid, old := range r.unclaimed {
		if e.Time.Sub(old.Time) > unclaimedTTL {
			delete(r.unclaimed, pid)
		}
	}
	r.unclaimed[e.Pid] = e
}

// Watch returns a channel that receives the exit of pid, a child of this
// process (or one reparented to it), even if it was reaped already.
func (r *Reaper) Watch(pid int) <-chan Exit {
	ch := make(chan Exit, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.unclaimed[pid]; ok {
		delete(r.unclaimed, pid)
		ch <- e
		return ch
	}
	r.waiters[pid] = ch
	return ch
}

// Forget stops watching pid.
func (r *Reaper) Forget(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiters, pid)
}

// Start starts cmd and registers it before it can be reaped (go-runc's
// ProcessMonitor).
func (r *Reaper) Start(cmd *exec.Cmd) (chan runc.Exit, error) {
	ec := make(chan runc.Exit, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan Exit, 1)
	r.waiters[cmd.Process.Pid] = ch
	go func() {
		e := <-ch
		ec <- runc.Exit{Timestamp: e.Time, Pid: e.Pid, Status: e.Code()}
		close(ec)
	}()
	return ec, nil
}

// StartLocked is Start: mrtd does not set a parent-death signal on runc in
// daemon mode.
func (r *Reaper) StartLocked(cmd *exec.Cmd) (chan runc.Exit, error) {
	return r.Start(cmd)
}

// Wait waits for cmd, started with Start, and for its output to be copied.
func (r *Reaper) Wait(cmd *exec.Cmd, ec chan runc.Exit) (int, error) {
	e := <-ec
	// The process is reaped already: Wait fails with ECHILD, but still
	// waits for exec's goroutines copying its output and closes its pipes.
	cmd.Wait()
	// A failed Wait keeps the process's pidfd open until the garbage
	// collector finds it: close it now.
	cmd.Process.Release()
	return e.Status, nil
}

var _ runc.ProcessMonitor = (*Reaper)(nil)
