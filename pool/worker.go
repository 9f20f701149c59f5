package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
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
	id    string
	opts  container.Options
	// optsErr is why the pool could not make opts (PerWorker failed).
	optsErr error
	pool    *Pool
	log     logr.Logger
	health  healthState
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
		return &container.StartError{ID: w.id, Reason: optsErr.Error()}
	}
	if err := p.usable(opts.Rootfs); err != nil {
		return err
	}
	proc, err := p.rt.Start(ctx, w.id, opts, w.output)
	if err != nil {
		return fmt.Errorf("starting worker %d: %w", w.index, err)
	}
	started(proc.Pid())
	exit, sick, oom := w.wait(ctx, proc)
	if err := p.rt.Delete(context.WithoutCancel(ctx), proc); err != nil {
		w.log.Error(err, "deleting container", "containerId", w.id)
	}
	return exitError(exit, sick, oom)
}

// stop sends the stop signal, waits up to the stop timeout (or until the
// daemon is told to kill at once), then kills.
func (w *worker) stop(proc Process) reaper.Exit {
	p := w.pool
	if err := proc.Signal(p.cfg.StopSignal); err != nil && !errors.Is(err, os.ErrProcessDone) {
		w.log.Error(err, "sending the stop signal", "containerId", w.id)
	}
	t := time.NewTimer(p.cfg.StopTimeout)
	defer t.Stop()
	select {
	case e := <-proc.Exited():
		return e
	case <-t.C:
		w.log.Info("stop timeout reached, killing", "worker", w.index, "containerId", w.id, "stopTimeout", p.cfg.StopTimeout.String())
	case <-p.kill:
	}
	if err := proc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		w.log.Error(err, "killing", "containerId", w.id)
	}
	return <-proc.Exited()
}

// output logs one line the container printed, or one piece of a long line:
// "partial": true on every piece but the last.
func (w *worker) output(stream string, line []byte, partial bool) {
	if partial {
		w.log.Info("output", "worker", w.index, "containerId", w.id, "stream", stream, "line", string(line), "partial", true)
		return
	}
	w.log.Info("output", "worker", w.index, "containerId", w.id, "stream", stream, "line", string(line))
}

var _ supervisor.Service = (*worker)(nil)
