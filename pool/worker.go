package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/reaper"
	"github.com/mrt-project/mrt/supervisor"
)

// ExitError is a worker container that exited non-zero or was killed.
type ExitError struct {
	Exit reaper.Exit
	// OOM is set when the kernel's OOM killer killed it (SIGKILL, or exit
	// status 137 from an init that reports its command's SIGKILL, and its
	// cgroup counted an OOM kill; see container.Process.OOMKilled).
	OOM bool
}

func (e *ExitError) Error() string {
	if e.Exit.Status.Signaled() {
		if e.OOM {
			return "killed by signal " + unix.SignalName(e.Exit.Status.Signal()) + ": out of memory"
		}
		return "killed by signal " + unix.SignalName(e.Exit.Status.Signal())
	}
	if e.OOM {
		return "exit status " + strconv.Itoa(e.Exit.Status.ExitStatus()) + ": out of memory"
	}
	return "exit status " + strconv.Itoa(e.Exit.Status.ExitStatus())
}

// worker is one container slot of the pool.
type worker struct {
	index int
	opts  container.Options
	// optsErr is why the pool could not make opts (PerWorker failed).
	optsErr error
	pool    *Pool
	log     logr.Logger
	health  healthState

	mu sync.Mutex
	// cur is the id of the container the worker runs, or ran last;
	// fromStandby is set when that one was a standby.
	cur         string
	fromStandby bool
	sb          *standby // the next container, with --standby

	// Serve's alone, and dropStandby's once the worker's loop ended.
	last     int              // the slot of the last container started
	deleting [2]chan struct{} // closed once the slot's last container is deleted
	gate     chan struct{}    // see closeGate
}

// current is the id of the container the worker runs or ran last.
func (w *worker) current() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// state returns current, whether it came from a standby, and whether a
// standby waits.
func (w *worker) state() (id string, fromStandby, standby bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur, w.fromStandby, w.sb != nil && w.sb.ready.Load()
}

// Serve runs the worker's container once. It implements supervisor.Service.
func (w *worker) Serve(ctx context.Context, started func(pid int)) error {
	p := w.pool
	r, err := w.start(ctx)
	if err != nil {
		return err
	}
	id := slotID(p.cfg.Instance, w.index, r.slot)
	w.last = r.slot
	w.mu.Lock()
	w.cur, w.fromStandby = id, r.fromStandby
	w.mu.Unlock()
	started(r.proc.Pid())
	if p.cfg.Standby {
		w.keepStandby(r.opts, r.slot^1, w.deleting[r.slot^1])
	}
	exit, sick, oom := w.wait(ctx, r.proc)
	// Off the restart path: the next container uses the other slot.
	w.deleteLater(r.slot, r.proc, id, w.closeGate())
	return exitError(exit, sick, oom)
}

// run is a container start made for a worker.
type run struct {
	proc        Process
	slot        int
	fromStandby bool
	opts        container.Options
}

// start starts the worker's next container: its standby, or a new one in
// the slot the last container did not use. Once it was tried, the last
// container's delete may run.
func (w *worker) start(ctx context.Context) (run, error) {
	defer w.openGate()
	p := w.pool
	p.mu.Lock()
	if w.optsErr != nil {
		// What PerWorker lacked (a worker's own directory) may be there
		// now: each try makes the options anew.
		w.opts, w.optsErr = p.options(w.index)
	}
	opts, optsErr := w.opts, w.optsErr
	p.mu.Unlock()
	if optsErr != nil {
		// A failed start, as runc's own: logged with its reason, counted
		// as start_failed, retried after a backoff.
		return run{}, &container.StartError{ID: slotID(p.cfg.Instance, w.index, w.last^1), Reason: optsErr.Error()}
	}
	if err := p.usable(opts.Rootfs); err != nil {
		return run{}, err
	}
	if p.cfg.Standby {
		if proc, slot := w.takeStandby(opts); proc != nil {
			err := p.rt.StartCreated(ctx, proc)
			if err == nil {
				return run{proc: proc, slot: slot, fromStandby: true, opts: opts}, nil
			}
			w.log.Error(err, "starting the standby; starting a container instead", "worker", w.index,
				"containerId", slotID(p.cfg.Instance, w.index, slot))
			w.discardLater(slot, proc)
		}
	}
	// The slot the last container did not use: its delete is usually
	// long done.
	slot := w.last ^ 1
	w.awaitDelete(slot)
	id := slotID(p.cfg.Instance, w.index, slot)
	proc, err := p.rt.Start(ctx, id, opts, w.output(id))
	if err != nil {
		return run{}, fmt.Errorf("starting worker %d: %w", w.index, err)
	}
	return run{proc: proc, slot: slot, opts: opts}, nil
}

// stop sends the stop signal, waits up to the stop timeout (or until the
// daemon is told to kill at once), then kills.
func (w *worker) stop(proc Process) reaper.Exit {
	p := w.pool
	if err := proc.Signal(p.cfg.StopSignal); err != nil && !errors.Is(err, os.ErrProcessDone) {
		w.log.Error(err, "sending the stop signal", "containerId", w.current())
	}
	t := time.NewTimer(p.cfg.StopTimeout)
	defer t.Stop()
	select {
	case e := <-proc.Exited():
		return e
	case <-t.C:
		w.log.Info("stop timeout reached, killing", "worker", w.index, "containerId", w.current(), "stopTimeout", p.cfg.StopTimeout.String())
	case <-p.kill:
	}
	if err := proc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		w.log.Error(err, "killing", "containerId", w.current())
	}
	return <-proc.Exited()
}

// output returns what logs each line container id prints, or each piece
// of a long line: "partial": true on every piece but the last.
func (w *worker) output(id string) container.Output {
	return func(stream string, line []byte, partial bool) {
		if partial {
			w.log.Info("output", "worker", w.index, "containerId", id, "stream", stream, "line", string(line), "partial", true)
			return
		}
		w.log.Info("output", "worker", w.index, "containerId", id, "stream", stream, "line", string(line))
	}
}

var _ supervisor.Service = (*worker)(nil)
