package pool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/reaper"
)

// waitTimeout bounds every wait of these tests. A test that reaches it has
// failed for another reason than speed: nothing here takes more than a few
// milliseconds when the pool works.
const waitTimeout = 10 * time.Second

// waitFor polls cond until it holds and fails the test, naming what it
// waited for, after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		case <-tick.C:
		}
	}
}

// exitCode is the wait status of a command that exited with code.
func exitCode(code int) unix.WaitStatus { return unix.WaitStatus(code << 8) }

// killedBy is the wait status of a command killed by sig.
func killedBy(sig unix.Signal) unix.WaitStatus { return unix.WaitStatus(sig) }

// fakeProcess is a container whose init exits when the test says so, or
// when it is signalled: SIGKILL kills it, any other signal makes it exit 0
// unless it ignores signals.
type fakeProcess struct {
	id     string // the container id: the worker's or its second slot's
	pid    int
	opts   container.Options
	exited chan reaper.Exit

	mu       sync.Mutex
	done     bool
	ignore   bool
	signals  []unix.Signal
	deleted  bool
	received bool // Delete saw the exit delivered
	oom      bool // OOMKilled's answer
	created  bool // made by Create and not started
	// deletesBefore is how many Delete calls had begun when it started.
	deletesBefore int
}

func (p *fakeProcess) Pid() int                   { return p.pid }
func (p *fakeProcess) Exited() <-chan reaper.Exit { return p.exited }

func (p *fakeProcess) Signal(sig unix.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return os.ErrProcessDone
	}
	p.signals = append(p.signals, sig)
	switch {
	case sig == unix.SIGKILL:
		p.exitLocked(killedBy(unix.SIGKILL))
	case !p.ignore:
		p.exitLocked(exitCode(0))
	}
	return nil
}

func (p *fakeProcess) OOMKilled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.oom
}

// exit makes the process end with status, once.
func (p *fakeProcess) exit(status unix.WaitStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exitLocked(status)
}

func (p *fakeProcess) exitLocked(status unix.WaitStatus) {
	if p.done {
		return
	}
	p.done = true
	p.exited <- reaper.Exit{Pid: p.pid, Status: status, Time: time.Now()}
}

// ignoreSignals makes every signal but SIGKILL do nothing.
func (p *fakeProcess) ignoreSignals() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ignore = true
}

// Signals returns the signals sent to the process while it ran.
func (p *fakeProcess) Signals() []unix.Signal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.signals)
}

func (p *fakeProcess) isDeleted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.deleted
}

// waitSignals waits until the process received want, in this order.
func (p *fakeProcess) waitSignals(t *testing.T, want ...unix.Signal) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s (pid %d) to receive %v", p.id, p.pid, want), func() bool {
		return slices.Equal(p.Signals(), want)
	})
}

// fakeRuntime is a Runtime whose containers are fakeProcesses.
type fakeRuntime struct {
	t    *testing.T
	runc string
	// runcDelay, when set before Run, makes every Runc call sleep: a
	// worker in usable() is then held without any synchronization the
	// race detector would count.
	runcDelay time.Duration

	mu         sync.Mutex
	nextPid    int
	startErrs  map[string][]error        // the next starts of an id fail with these
	procs      map[string][]*fakeProcess // started, by worker id (slotless)
	standbys   map[string][]*fakeProcess // created, by worker id
	createErr  error                     // every Create fails with it
	startedErr error                     // every StartCreated fails with it
	stale      []string
	staleErr   error
	staleOwned []func(string) bool // RemoveStale's owned, by call
	startedPre int                 // containers started before RemoveStale was called
	deleting   int                 // Delete calls entered
	holdDelete chan struct{}
	// exec, when set, answers Exec (health checks); otherwise every
	// command exits 0. execs counts the calls, by id.
	exec  func(ctx context.Context, id string, args []string) (container.ExecResult, error)
	execs map[string]int
}

func newFakeRuntime(t *testing.T, runc string) *fakeRuntime {
	return &fakeRuntime{t: t, runc: runc, nextPid: 1000, startErrs: map[string][]error{}, procs: map[string][]*fakeProcess{},
		standbys: map[string][]*fakeProcess{}}
}

// workerID is the worker's id for a container id of either slot: what the
// fake keys its records by.
func workerID(id string) string { return strings.TrimSuffix(id, ".1") }

// failStarts makes the next len(errs) starts of id fail, in order.
func (r *fakeRuntime) failStarts(id string, errs ...error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.startErrs[id] = append(r.startErrs[id], errs...)
}

func (r *fakeRuntime) Start(ctx context.Context, id string, o container.Options, out container.Output) (Process, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := workerID(id)
	if errs := r.startErrs[key]; len(errs) > 0 {
		r.startErrs[key] = errs[1:]
		return nil, errs[0]
	}
	r.checkFreeLocked(id)
	r.nextPid++
	p := &fakeProcess{id: id, pid: r.nextPid, opts: o, exited: make(chan reaper.Exit, 1), deletesBefore: r.deleting}
	r.procs[key] = append(r.procs[key], p)
	out("stdout", []byte("started "+id), false)
	return p, nil
}

// checkFreeLocked fails the test when a container of id exists that was
// not deleted: runc refuses a second container with the same id.
func (r *fakeRuntime) checkFreeLocked(id string) {
	for _, ps := range [][]*fakeProcess{r.procs[workerID(id)], r.standbys[workerID(id)]} {
		for _, p := range ps {
			if p.id == id && !p.isDeleted() {
				r.t.Errorf("container %s (pid %d) made again before its delete", id, p.pid)
			}
		}
	}
}

func (r *fakeRuntime) Create(ctx context.Context, id string, o container.Options, out container.Output) (Process, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.createErr != nil {
		return nil, r.createErr
	}
	r.checkFreeLocked(id)
	r.nextPid++
	p := &fakeProcess{id: id, pid: r.nextPid, opts: o, exited: make(chan reaper.Exit, 1), created: true}
	key := workerID(id)
	r.standbys[key] = append(r.standbys[key], p)
	return p, nil
}

func (r *fakeRuntime) StartCreated(ctx context.Context, proc Process) error {
	p := proc.(*fakeProcess)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.startedErr != nil {
		return r.startedErr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.created || p.done || p.deleted {
		r.t.Errorf("StartCreated(%s, pid %d): created %v, exited %v, deleted %v", p.id, p.pid, p.created, p.done, p.deleted)
	}
	p.created = false
	key := workerID(p.id)
	r.procs[key] = append(r.procs[key], p)
	return nil
}

// standby returns the n-th (from 0) container created for worker id.
func (r *fakeRuntime) standby(t *testing.T, id string, n int) *fakeProcess {
	t.Helper()
	var p *fakeProcess
	waitFor(t, fmt.Sprintf("standby number %d of %s", n+1, id), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.standbys[id]) > n {
			p = r.standbys[id][n]
		}
		return p != nil
	})
	return p
}

func (r *fakeRuntime) Delete(ctx context.Context, proc Process) error {
	p := proc.(*fakeProcess)
	r.mu.Lock()
	r.deleting++
	hold := r.holdDelete
	r.mu.Unlock()
	p.mu.Lock()
	if !p.done {
		r.t.Errorf("Delete(%s, pid %d) before its init exited", p.id, p.pid)
	}
	if p.deleted {
		r.t.Errorf("Delete(%s, pid %d) twice", p.id, p.pid)
	}
	p.mu.Unlock()
	if hold != nil {
		<-hold
	}
	p.mu.Lock()
	p.deleted = true
	p.mu.Unlock()
	return nil
}

func (r *fakeRuntime) RemoveStale(ctx context.Context, owned func(id string) bool) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.staleOwned = append(r.staleOwned, owned)
	for _, ps := range r.procs {
		r.startedPre += len(ps)
	}
	return r.stale, r.staleErr
}

func (r *fakeRuntime) Exec(ctx context.Context, id string, args []string, timeout time.Duration) (container.ExecResult, error) {
	r.mu.Lock()
	if r.execs == nil {
		r.execs = map[string]int{}
	}
	r.execs[workerID(id)]++
	exec := r.exec
	r.mu.Unlock()
	if exec == nil {
		return container.ExecResult{}, nil
	}
	return exec(ctx, workerID(id), args)
}

// setExec makes f answer Exec from now on.
func (r *fakeRuntime) setExec(f func(ctx context.Context, id string, args []string) (container.ExecResult, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exec = f
}

// execCount is how many commands were run in id's containers.
func (r *fakeRuntime) execCount(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.execs[id]
}

func (r *fakeRuntime) Runc() string {
	time.Sleep(r.runcDelay)
	return r.runc
}

// starts is how many containers of id were started.
func (r *fakeRuntime) starts(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.procs[id])
}

// proc waits for the n-th (from 0) container of id to start.
func (r *fakeRuntime) proc(t *testing.T, id string, n int) *fakeProcess {
	t.Helper()
	var p *fakeProcess
	waitFor(t, fmt.Sprintf("start number %d of %s", n+1, id), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.procs[id]) > n {
			p = r.procs[id][n]
		}
		return p != nil
	})
	return p
}

// all returns every container started so far.
func (r *fakeRuntime) all() []*fakeProcess {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*fakeProcess
	for _, ps := range r.procs {
		out = append(out, ps...)
	}
	return out
}

// recorder keeps every event a pool's Hook receives; it never blocks.
type recorder struct {
	mu     sync.Mutex
	events []Event
	// read is, per worker, how many of its events the test consumed.
	read map[int]int
}

func (r *recorder) hook(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// of returns worker's events so far.
func (r *recorder) of(worker int) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, ev := range r.events {
		if ev.Worker == worker {
			out = append(out, ev)
		}
	}
	return out
}

// next returns worker's next event in state, skipping the others, and
// fails after waitTimeout.
func (r *recorder) next(t *testing.T, worker int, state State) Event {
	t.Helper()
	var found Event
	waitFor(t, fmt.Sprintf("a %q event of worker %d", state, worker), func() bool {
		evs := r.of(worker)
		for i := r.read[worker]; i < len(evs); i++ {
			if evs[i].State == state {
				found = evs[i]
				r.read[worker] = i + 1
				return true
			}
		}
		return false
	})
	return found
}

// states lists worker's states so far, for messages.
func (r *recorder) states(worker int) string {
	var s []string
	for _, ev := range r.of(worker) {
		s = append(s, string(ev.State))
	}
	return strings.Join(s, " -> ")
}

// fixture is a pool over a fake runtime, with real rootfs and runc paths.
type fixture struct {
	cfg  Config
	rt   *fakeRuntime
	rec  *recorder
	pool *Pool

	cancel context.CancelFunc
	done   chan error
	ended  bool
	err    error
}

// newFixture builds a pool of workers over a fake runtime; edit, when not
// nil, changes the configuration first.
func newFixture(t *testing.T, workers int, edit func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	runc := filepath.Join(dir, "runc")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(runc, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fixture{rt: newFakeRuntime(t, runc), rec: &recorder{read: map[int]int{}}}
	f.cfg = Config{
		Workers:     workers,
		Instance:    "web",
		Template:    container.Options{Rootfs: rootfs, Args: []string{"/bin/serve", "--port", "80"}, Env: []string{"A=1"}},
		StopSignal:  unix.SIGTERM,
		StopTimeout: 2 * time.Second,
		BackoffMin:  time.Millisecond,
		BackoffMax:  5 * time.Millisecond,
		Hook:        f.rec.hook,
	}
	if edit != nil {
		edit(&f.cfg)
	}
	p, err := newPool(f.cfg, f.rt, nil, testr.New(t))
	if err != nil {
		t.Fatalf("newPool: %v", err)
	}
	f.pool = p
	return f
}

// start runs the pool until the test stops it; the test's cleanup stops
// it too, and checks that Run returned.
func (f *fixture) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.pool.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		f.wait(t)
	})
}

// stop cancels Run's context and returns what Run returned.
func (f *fixture) stop(t *testing.T) error {
	t.Helper()
	f.cancel()
	return f.wait(t)
}

// wait waits for Run to return.
func (f *fixture) wait(t *testing.T) error {
	t.Helper()
	if f.ended {
		return f.err
	}
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	select {
	case f.err = <-f.done:
		f.ended = true
	case <-timeout.C:
		t.Fatalf("Run did not return within %v", waitTimeout)
	}
	return f.err
}

// runReturned reports, without waiting, whether Run has returned.
func (f *fixture) runReturned() bool {
	if f.ended {
		return true
	}
	select {
	case f.err = <-f.done:
		f.ended = true
		return true
	default:
		return false
	}
}

// id is worker i's container id.
func (f *fixture) id(i int) string { return ContainerID(f.cfg.Instance, i) }

// running waits for worker i's n-th (from 0) container to be reported
// running, and returns it.
func (f *fixture) running(t *testing.T, i, n int) *fakeProcess {
	t.Helper()
	p := f.rt.proc(t, f.id(i), n)
	for {
		ev := f.rec.next(t, i, Running)
		if ev.Pid == p.pid {
			return p
		}
	}
}
