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
	return w.cur, w.fromStandby, w.sb != nil && w.sb.isReady()
}

// Serve runs the worker's container once. It implements supervisor.Service.
func (w *worker) Serve(ctx context.Context, started func(pid int)) error {
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
		return &container.StartError{ID: slotID(p.cfg.Instance, w.index, w.last^1), Reason: optsErr.Error()}
	}
	if err := p.usable(opts.Rootfs); err != nil {
		return err
	}
	var proc Process
	slot, fromStandby := 0, false
	if p.cfg.Standby {
		proc, slot = w.takeStandby(opts)
	}
	if proc != nil {
		if err := p.rt.StartCreated(ctx, proc); err != nil {
			w.log.Error(err, "starting the standby; starting a container instead", "worker", w.index,
				"containerId", slotID(p.cfg.Instance, w.index, slot))
			w.discardLater(slot, proc)
			proc = nil
		} else {
			fromStandby = true
		}
	}
	if proc == nil {
		// The slot the last container did not use: its delete is
		// usually long done.
		slot = w.last ^ 1
		w.awaitDelete(slot)
		id := slotID(p.cfg.Instance, w.index, slot)
		var err error
		if proc, err = p.rt.Start(ctx, id, opts, w.output(id)); err != nil {
			return fmt.Errorf("starting worker %d: %w", w.index, err)
		}
	}
	id := slotID(p.cfg.Instance, w.index, slot)
	w.last = slot
	w.mu.Lock()
	w.cur, w.fromStandby = id, fromStandby
	w.mu.Unlock()
	started(proc.Pid())
	if p.cfg.Standby {
		w.keepStandby(opts, slot^1, w.deleting[slot^1])
	}
	exit, sick, oom := w.wait(ctx, proc)
	// Off the restart path: the next container uses the other slot.
	w.deleteLater(slot, proc, id)
	return exitError(exit, sick, oom)
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
