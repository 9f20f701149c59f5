package pool

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// withStandby is newFixture's edit for a pool with --standby.
func withStandby(c *Config) { c.Standby = true }

// standbyReady waits until worker i's status shows a standby.
func (f *fixture) standbyReady(t *testing.T, i int) {
	t.Helper()
	waitFor(t, "worker's standby in its status", func() bool {
		for _, st := range f.pool.Status() {
			if st.Worker == i {
				return st.Standby
			}
		}
		return false
	})
}

// removed reports whether p was killed before it ever started and deleted.
func removed(p *fakeProcess) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.created && p.done && p.deleted
}

func TestStandbyServesRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, withStandby)
	f.start(t)
	first := f.running(t, 0, 0)
	sb := f.rt.standby(t, f.id(0), 0)
	if sb.id != f.id(0)+".1" {
		t.Errorf("standby id %q, want the worker's second slot %q", sb.id, f.id(0)+".1")
	}
	if !slices.Equal(sb.opts.Env, first.opts.Env) || sb.opts.Hostname != first.opts.Hostname {
		t.Errorf("standby made with %+v, want the running container's %+v", sb.opts, first.opts)
	}
	f.standbyReady(t, 0)

	first.exit(exitCode(1))
	ev := f.rec.next(t, 0, Running)
	for ev.Pid == first.pid {
		ev = f.rec.next(t, 0, Running)
	}
	if ev.Pid != sb.pid || !ev.FromStandby || ev.ContainerID != sb.id {
		t.Fatalf("restart event %+v, want the standby (pid %d, %s) started", ev, sb.pid, sb.id)
	}
	if got := f.rt.starts(f.id(0)); got != 2 {
		t.Errorf("%d containers started, want 2 (the first, then the standby)", got)
	}
	// Replaced: a new standby, in the dead container's slot, once that
	// one is deleted.
	next := f.rt.standby(t, f.id(0), 1)
	if next.id != f.id(0) || !first.isDeleted() {
		t.Errorf("second standby %s made (first container deleted: %v), want %s after its delete", next.id, first.isDeleted(), f.id(0))
	}
	f.standbyReady(t, 0)

	// Backoff still applies: the second failure in a row waits, and is
	// served by the standby all the same.
	sb.exit(exitCode(1))
	if ev := f.rec.next(t, 0, BackingOff); ev.Delay <= 0 {
		t.Errorf("second failure in a row: backoff %v, want a delay", ev.Delay)
	}
	if ev := f.rec.next(t, 0, Running); ev.Pid != next.pid || !ev.FromStandby {
		t.Errorf("second restart event %+v, want the second standby, pid %d", ev, next.pid)
	}

	if err := f.stop(t); err != nil {
		t.Fatal(err)
	}
	for _, p := range f.rt.all() {
		if !p.isDeleted() {
			t.Errorf("container %s (pid %d) left after stop", p.id, p.pid)
		}
	}
	last := f.rt.standby(t, f.id(0), 2)
	if !removed(last) {
		t.Errorf("the standby left at stop (%s, pid %d) was not killed and deleted", last.id, last.pid)
	}
}

func TestStandbyDiscardedOnReload(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2, withStandby)
	f.start(t)
	f.running(t, 0, 0)
	f.running(t, 1, 0)
	old0 := f.rt.standby(t, f.id(0), 0)
	old1 := f.rt.standby(t, f.id(1), 0)
	f.standbyReady(t, 0)
	f.standbyReady(t, 1)

	// Worker 1's container changes; worker 0's does not.
	got := f.pool.Reconfigure(f.cfg.Template, map[int][]string{1: {"B=2"}}, nil)
	if !slices.Equal(got, []int{1}) {
		t.Fatalf("Reconfigure restarted %v, want [1]", got)
	}
	p := f.running(t, 1, 1)
	if p.pid == old1.pid || !slices.Contains(p.opts.Env, "B=2") {
		t.Errorf("worker 1 runs pid %d with %q, want a new container with B=2, not the standby %d", p.pid, p.opts.Env, old1.pid)
	}
	waitFor(t, "the outdated standby killed and deleted", func() bool { return removed(old1) })
	fresh := f.rt.standby(t, f.id(1), 1)
	if !slices.Contains(fresh.opts.Env, "B=2") {
		t.Errorf("new standby made with %q, want B=2", fresh.opts.Env)
	}
	if old0.isDeleted() || len(old0.Signals()) > 0 {
		t.Errorf("worker 0's standby was touched by a reload that left worker 0 alone")
	}
}

func TestStandbyRemovedOnScaleDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2, withStandby)
	f.start(t)
	f.running(t, 1, 0)
	sb := f.rt.standby(t, f.id(1), 0)
	f.standbyReady(t, 1)
	if err := f.pool.Scale(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	// Scale returns once the removed worker and its standby are gone.
	if !removed(sb) {
		t.Errorf("scale down left worker 1's standby %s (pid %d)", sb.id, sb.pid)
	}
}

func TestStandbyDiedWhileWaitingIsReplaced(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, withStandby)
	f.start(t)
	first := f.running(t, 0, 0)
	sb := f.rt.standby(t, f.id(0), 0)
	f.standbyReady(t, 0)

	sb.exit(killedBy(unix.SIGKILL)) // its runc init killed
	again := f.rt.standby(t, f.id(0), 1)
	if again.id != sb.id || !sb.isDeleted() {
		t.Errorf("replacement %s made (dead one deleted: %v), want %s after the delete", again.id, sb.isDeleted(), sb.id)
	}
	f.standbyReady(t, 0)
	first.exit(exitCode(1))
	if ev := f.rec.next(t, 0, Running); ev.Pid == first.pid {
		f.rec.next(t, 0, Running)
	}
	if st := f.pool.Status()[0]; st.Pid != again.pid || !st.FromStandby {
		t.Errorf("after the restart: %+v, want the replacement standby, pid %d", st, again.pid)
	}
}

func TestStandbyDeadAtRestartFallsBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, func(c *Config) {
		withStandby(c)
		c.BackoffMin = time.Hour // any restart but the first would wait
	})
	f.start(t)
	first := f.running(t, 0, 0)
	sb := f.rt.standby(t, f.id(0), 0)
	f.standbyReady(t, 0)
	// Both die together: the restart finds its standby dead.
	f.rt.mu.Lock()
	f.rt.createErr = errors.New("no more standbys")
	f.rt.mu.Unlock()
	sb.exit(killedBy(unix.SIGKILL))
	first.exit(exitCode(1))
	next := f.running(t, 0, 1)
	if next.created || next.pid == sb.pid {
		t.Errorf("restart ran %s (pid %d), want a container started as without standby", next.id, next.pid)
	}
	waitFor(t, "the dead standby deleted", sb.isDeleted)
}

func TestStandbyStartFailureFallsBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, withStandby)
	f.start(t)
	first := f.running(t, 0, 0)
	sb := f.rt.standby(t, f.id(0), 0)
	f.standbyReady(t, 0)
	f.rt.mu.Lock()
	f.rt.startedErr = errors.New("runc start failed")
	f.rt.mu.Unlock()
	first.exit(exitCode(1))
	next := f.running(t, 0, 1)
	if next.pid == sb.pid {
		t.Errorf("restart ran the standby whose start failed")
	}
	if ev := f.rec.of(0); ev[len(ev)-1].Restarts != 1 {
		t.Errorf("events %s: the restart was not counted once", f.rec.states(0))
	}
	waitFor(t, "the standby that failed to start removed", func() bool { return removed(sb) })
}

func TestRestartDoesNotWaitForDelete(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	hold := make(chan struct{})
	f.rt.holdDelete = hold
	f.start(t)
	first := f.running(t, 0, 0)
	first.exit(exitCode(1))
	next := f.running(t, 0, 1) // while the first one's delete is held
	if first.isDeleted() {
		t.Fatal("the first container's delete went through while held")
	}
	if next.id == first.id {
		t.Errorf("the restart reused id %s before its delete", first.id)
	}
	close(hold)
	waitFor(t, "the first container deleted", first.isDeleted)
	next.exit(exitCode(1))
	// The third container goes back to the first slot, deleted by now.
	if third := f.running(t, 0, 2); third.id != first.id {
		t.Errorf("third container %s, want the first slot %s", third.id, first.id)
	}
}

func TestDeleteWaitsForTheNextStart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	f.start(t)
	first := f.running(t, 0, 0)
	first.exit(exitCode(1))
	next := f.running(t, 0, 1)
	// On a small machine the delete would compete with the start for CPU.
	if next.deletesBefore != 0 {
		t.Errorf("%d deletes had begun when the restart started, want none", next.deletesBefore)
	}
	waitFor(t, "the first container deleted", first.isDeleted)
}
