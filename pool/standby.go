package pool

import (
	"context"
	"errors"
	"os"
	"reflect"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/container"
)

// Each worker has two container ids, its slots: <instance>-<index> and
// <instance>-<index>.1. A worker's next container goes in the slot its
// last one did not use, so that the dead container's runc delete, which
// may take as long as a start, runs beside the next start instead of
// before it; and a standby waits in that slot while the current container
// runs in the other. The hostname, MRTD_WORKER and everything else of the
// container are the same in both.

// slotID is worker i's container id in slot.
func slotID(instance string, i, slot int) string {
	id := ContainerID(instance, i)
	if slot == 1 {
		id += ".1"
	}
	return id
}

// standbyReplacements bounds how many times one standby that died while
// waiting is created again; then restarts start containers as without
// --standby until the next run makes a new one.
const standbyReplacements = 3

// standby keeps one created container for a worker's next run: a
// goroutine creates it once the slot's last container is deleted, waits,
// and replaces it if its init dies meanwhile, until take or drop stops it.
type standby struct {
	slot int
	opts container.Options
	stop chan struct{} // closed by take and drop
	done chan struct{} // closed when the goroutine has returned

	// Set before done is closed: the created container, when there is one
	// and it was not started (its init may have died since).
	proc Process

	ready atomic.Bool // a created container waits
}

// keepStandby starts a standby of opts in slot, made once after (the
// delete of the slot's last container) is closed.
func (w *worker) keepStandby(opts container.Options, slot int, after <-chan struct{}) {
	sb := &standby{slot: slot, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	w.mu.Lock()
	w.sb = sb
	w.mu.Unlock()
	w.pool.bg.Add(1)
	go func() {
		defer w.pool.bg.Done()
		defer close(sb.done)
		w.runStandby(sb, after)
	}()
}

func (w *worker) runStandby(sb *standby, after <-chan struct{}) {
	p := w.pool
	id := slotID(p.cfg.Instance, w.index, sb.slot)
	if after != nil {
		select {
		case <-after:
		case <-sb.stop:
			return
		}
	}
	for made := 0; ; made++ {
		select {
		case <-sb.stop:
			return
		default:
		}
		proc, err := p.rt.Create(context.Background(), id, sb.opts, w.output(id))
		if err != nil {
			w.log.Error(err, "creating a standby container; restarts start a container as without --standby",
				"worker", w.index, "containerId", id)
			return
		}
		sb.ready.Store(true)
		w.log.V(1).Info("standby ready", "worker", w.index, "containerId", id, "pid", proc.Pid())
		select {
		case <-sb.stop:
			sb.proc = proc
			return
		case e := <-proc.Exited():
			sb.ready.Store(false)
			if err := p.rt.Delete(context.Background(), proc); err != nil {
				w.log.Error(err, "deleting container", "containerId", id)
			}
			if made+1 >= standbyReplacements {
				w.log.Info("standby died while waiting, again: restarts start a container as without --standby",
					"worker", w.index, "containerId", id, "exit", (&ExitError{Exit: e}).Error(), "standbys", made+1)
				return
			}
			w.log.Info("standby died while waiting, replacing it", "worker", w.index, "containerId", id,
				"exit", (&ExitError{Exit: e}).Error())
		}
	}
}

// takeStandby returns the worker's standby, created with opts and alive,
// and its slot; or nil when there is none, after discarding one that no
// longer fits. It waits for a standby being created.
func (w *worker) takeStandby(opts container.Options) (Process, int) {
	w.mu.Lock()
	sb := w.sb
	w.sb = nil
	w.mu.Unlock()
	if sb == nil {
		return nil, 0
	}
	close(sb.stop)
	<-sb.done
	if sb.proc == nil {
		return nil, 0
	}
	id := slotID(w.pool.cfg.Instance, w.index, sb.slot)
	if !reflect.DeepEqual(sb.opts, opts) {
		// A reload or a restart changed the worker's container.
		w.log.V(1).Info("discarding the standby: the worker's container changed", "worker", w.index, "containerId", id)
		w.discardLater(sb.slot, sb.proc)
		return nil, 0
	}
	select {
	case e := <-sb.proc.Exited():
		w.log.Info("standby died while waiting", "worker", w.index, "containerId", id, "exit", (&ExitError{Exit: e}).Error())
		w.deleteLater(sb.slot, sb.proc, id, nil)
		return nil, 0
	default:
	}
	return sb.proc, sb.slot
}

// dropStandby removes the worker's standby, if any, and returns once it
// and every container of the worker being deleted are gone.
func (w *worker) dropStandby() {
	w.mu.Lock()
	sb := w.sb
	w.sb = nil
	w.mu.Unlock()
	if sb != nil {
		close(sb.stop)
		<-sb.done
		if sb.proc != nil {
			w.discardLater(sb.slot, sb.proc)
		}
	}
	w.openGate()
	for _, d := range w.deleting {
		if d != nil {
			<-d
		}
	}
}

// deleteLater deletes proc, whose init has exited, in the background; the
// slot's next container waits for it. When gate is not nil, the delete
// waits for it to close first, or for gateWait.
func (w *worker) deleteLater(slot int, proc Process, id string, gate <-chan struct{}) {
	w.later(slot, gate, func() {
		if err := w.pool.rt.Delete(context.Background(), proc); err != nil {
			w.log.Error(err, "deleting container", "containerId", id)
		}
	})
}

// discardLater kills a created container that was never started and
// deletes it, in the background. SIGKILL and a plain delete, not runc
// delete --force, whose poll takes 100 ms at least.
func (w *worker) discardLater(slot int, proc Process) {
	id := slotID(w.pool.cfg.Instance, w.index, slot)
	w.later(slot, nil, func() {
		if err := proc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			w.log.Error(err, "killing the standby", "containerId", id)
		}
		select {
		case <-proc.Exited():
		case <-time.After(10 * time.Second):
			// Not reaped: runc delete --force kills what is left.
		}
		if err := w.pool.rt.Delete(context.Background(), proc); err != nil {
			w.log.Error(err, "deleting container", "containerId", id)
		}
	})
}

// later runs f in the background as the slot's pending delete, after the
// one before it, and after gate (see deleteLater).
func (w *worker) later(slot int, gate <-chan struct{}, f func()) {
	before, done := w.deleting[slot], make(chan struct{})
	w.deleting[slot] = done
	w.pool.bg.Add(1)
	go func() {
		defer w.pool.bg.Done()
		defer close(done)
		if gate != nil {
			t := time.NewTimer(gateWait)
			select {
			case <-gate:
			case <-t.C:
			}
			t.Stop()
		}
		if before != nil {
			<-before
		}
		f()
	}()
}

// gateWait bounds how long a dead container's delete waits for the
// worker's next start (a backoff, a stop).
const gateWait = time.Second

// closeGate makes a gate for the delete of the container that just
// ended: the delete waits until openGate, after the next start was tried,
// so that on a small machine it does not compete with that start for CPU.
func (w *worker) closeGate() <-chan struct{} {
	w.openGate()
	w.gate = make(chan struct{})
	return w.gate
}

// openGate lets the pending delete gated by closeGate run.
func (w *worker) openGate() {
	if w.gate != nil {
		close(w.gate)
		w.gate = nil
	}
}

// awaitDelete waits for the slot's pending delete, if any.
func (w *worker) awaitDelete(slot int) {
	if d := w.deleting[slot]; d != nil {
		<-d
	}
}
