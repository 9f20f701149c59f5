package pool

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Regression tests of bugs the fake runtime found: a data race between
// Reconfigure and a starting worker, Restart and Reconfigure of a worker
// its policy left stopped, events out of order at stop, Scale before Run.

// Run with -race.
func TestReconfigureWhileWorkersStart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4, nil)
	f.rt.runcDelay = 200 * time.Millisecond
	f.start(t)
	// Let the workers reach usable(), which asks for runc (and sleeps)
	// before it reads the template's rootfs. No synchronization on
	// purpose: the race detector must see the accesses as they are. The
	// test passes whatever the timing when the pool is right.
	time.Sleep(20 * time.Millisecond)
	tmpl := f.cfg.Template
	tmpl.Args = []string{"/bin/serve", "--port", "81"}
	f.pool.Reconfigure(tmpl, nil, nil)
	for i := range 4 {
		f.running(t, i, 0)
	}
}

func TestRestartStoppedWorker(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, func(c *Config) { c.Restart = RestartOnFailure })
	f.start(t)
	f.running(t, 0, 0).exit(exitCode(0))
	f.rec.next(t, 0, Stopped)
	if err := f.pool.Restart(0); err != nil {
		t.Fatalf("Restart(0) = %v", err)
	}
	f.running(t, 0, 1)
}

func TestReconfigureStoppedWorker(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, func(c *Config) { c.Restart = RestartOnFailure })
	f.start(t)
	f.running(t, 0, 0).exit(exitCode(0))
	f.rec.next(t, 0, Stopped)
	tmpl := f.cfg.Template
	tmpl.Args = []string{"/bin/other"}
	if got := f.pool.Reconfigure(tmpl, nil, nil); len(got) != 1 || got[0] != 0 {
		t.Fatalf("Reconfigure = %v, want [0]", got)
	}
	f.running(t, 0, 1)
}

func TestStoppingEventNotAfterStopped(t *testing.T) {
	t.Parallel()
	// The workers ignore the stop signal until the first Stopping event
	// kills them: every worker is still running when Run marks them
	// stopping.
	var f *fixture
	first := true
	f = newFixture(t, 2, func(c *Config) {
		c.Hook = func(ev Event) {
			f.rec.hook(ev)
			if ev.State != Stopping || !first { // Stopping events come from Run's goroutine only
				return
			}
			// A slow hook (a journal, a metrics push) on the first
			// Stopping event, while the other worker may stop: its
			// Stopped event must still come after its Stopping one.
			// (With hooks out of order, it often came first.)
			first = false
			for _, p := range f.rt.all() {
				p.exit(killedBy(unix.SIGKILL))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	f.start(t)
	f.running(t, 0, 0).ignoreSignals()
	f.running(t, 1, 0).ignoreSignals()
	if err := f.stop(t); err != nil {
		t.Errorf("Run = %v", err)
	}
	for i := range 2 {
		evs := f.rec.of(i)
		if last := evs[len(evs)-1]; last.State != Stopped {
			t.Errorf("worker %d: events %s; the last is %s, but the worker is %s", i, f.rec.states(i), last.State, f.pool.Status()[i].State)
		}
	}
}

func TestScaleDownBeforeRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3, nil)
	err := f.pool.Scale(context.Background(), 1)
	f.start(t)
	f.running(t, 0, 0)
	if got, d := len(f.pool.Status()), f.pool.Desired(); got != d {
		t.Errorf("after Scale(1) before Run returned %v: %d workers, Desired %d", err, got, d)
	}
}
