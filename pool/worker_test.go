package pool

import (
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/container"
)

func TestExitedWorkerIsRestarted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		status  unix.WaitStatus
		reason  Reason
		lastErr string // "" for a nil LastExit
	}{
		{"nonzero", exitCode(3), ReasonExitedNonzero, "exit status 3"},
		{"signaled", killedBy(unix.SIGSEGV), ReasonSignaled, "killed by signal SIGSEGV"},
		{"zero", exitCode(0), ReasonExited0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 1, nil)
			f.start(t)

			ev := f.rec.next(t, 0, Starting)
			if ev.Restarts != 0 || ev.ContainerID != "web-0" || ev.Reason != ReasonNone {
				t.Errorf("first Starting event = %+v, want worker web-0, no restarts, no reason", ev)
			}
			first := f.running(t, 0, 0)
			for run := 1; run <= 3; run++ {
				first.exit(tc.status)
				ev := f.rec.next(t, 0, BackingOff)
				if ev.Reason != tc.reason {
					t.Errorf("run %d: BackingOff reason = %q, want %q", run, ev.Reason, tc.reason)
				}
				if got := errString(ev.LastExit); got != tc.lastErr {
					t.Errorf("run %d: LastExit = %q, want %q", run, got, tc.lastErr)
				}
				var exit *ExitError
				if tc.lastErr != "" && !errors.As(ev.LastExit, &exit) {
					t.Errorf("run %d: LastExit %v is not an *ExitError", run, ev.LastExit)
				}
				// A failure restarts at once the first time in a row, then
				// backs off; a clean exit waits the minimum.
				atOnce := run == 1 && tc.reason != ReasonExited0
				if ev.Pid != 0 || (ev.Delay == 0) != atOnce || ev.BackoffUntil.IsZero() {
					t.Errorf("run %d: BackingOff event = %+v, want no pid, a delay (none: %v) and its end", run, ev, atOnce)
				}
				if ev := f.rec.next(t, 0, Starting); ev.Restarts != run {
					t.Errorf("run %d: Starting event has Restarts %d, want %d", run, ev.Restarts, run)
				}
				next := f.running(t, 0, run)
				if next.pid == first.pid {
					t.Errorf("run %d: the restarted container has the old pid %d", run, first.pid)
				}
				// Deleted beside the restart, not before it.
				waitFor(t, "the container that exited deleted", first.isDeleted)
				if st := f.pool.Status()[0]; st.Pid != next.pid || st.State != Running || st.Restarts != run || st.Reason != tc.reason {
					t.Errorf("run %d: Status = %+v, want running pid %d, %d restarts, reason %q", run, st, next.pid, run, tc.reason)
				}
				first = next
			}
			if err := f.stop(t); err != nil {
				t.Errorf("Run = %v, want nil after a cancellation", err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestStartFailureBacksOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		err         error
		reason      Reason
		startReason string
	}{
		{"start error", &container.StartError{ID: "web-0", Reason: "exec: \"/bin/serve\": no such file or directory"}, ReasonStartFailed, "exec: \"/bin/serve\": no such file or directory"},
		{"other error", errors.New("runc: broken pipe"), ReasonError, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 1, nil)
			f.rt.failStarts("web-0", tc.err, tc.err)
			f.start(t)

			for try := 1; try <= 2; try++ {
				ev := f.rec.next(t, 0, BackingOff)
				if ev.Reason != tc.reason || ev.StartReason != tc.startReason {
					t.Errorf("try %d: reason %q, start reason %q; want %q, %q", try, ev.Reason, ev.StartReason, tc.reason, tc.startReason)
				}
				if !errors.Is(ev.LastExit, tc.err) {
					t.Errorf("try %d: LastExit %v does not wrap %v", try, ev.LastExit, tc.err)
				}
				// The first failure restarts at once, the second backs off.
				if ev.Restarts != try-1 || (ev.Delay == 0) != (try == 1) {
					t.Errorf("try %d: Restarts %d, Delay %v; want %d and a backoff from the second", try, ev.Restarts, ev.Delay, try-1)
				}
			}
			// The third start succeeds.
			p := f.running(t, 0, 0)
			if st := f.pool.Status()[0]; st.State != Running || st.Pid != p.pid || st.Restarts != 2 {
				t.Errorf("Status = %+v, want running pid %d after 2 restarts", st, p.pid)
			}
			if err := f.stop(t); err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
}

func TestRestartOnFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2, func(c *Config) { c.Restart = RestartOnFailure })
	f.start(t)
	clean, failed := f.running(t, 0, 0), f.running(t, 1, 0)

	clean.exit(exitCode(0))
	ev := f.rec.next(t, 0, Stopped)
	if ev.Reason != ReasonExited0 || ev.LastExit != nil {
		t.Errorf("worker 0 Stopped event: reason %q, LastExit %v; want %q, nil", ev.Reason, ev.LastExit, ReasonExited0)
	}
	failed.exit(exitCode(1))
	if ev := f.rec.next(t, 1, BackingOff); ev.Reason != ReasonExitedNonzero {
		t.Errorf("worker 1 BackingOff reason %q, want %q", ev.Reason, ReasonExitedNonzero)
	}
	f.running(t, 1, 1)

	st := f.pool.Status()
	if st[0].State != Stopped || st[0].Reason != ReasonExited0 || st[1].State != Running || st[1].Restarts != 1 {
		t.Errorf("Status = %+v, want worker 0 stopped (exited_0), worker 1 running after 1 restart", st)
	}
	if err := f.stop(t); err != nil {
		t.Errorf("Run = %v", err)
	}
	if n := f.rt.starts("web-0"); n != 1 {
		t.Errorf("worker 0 was started %d times, want once", n)
	}
	if !clean.isDeleted() {
		t.Error("worker 0's container was not deleted")
	}
}

func TestStop(t *testing.T) {
	t.Parallel()

	t.Run("stop signal to every worker", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 3, func(c *Config) { c.StopSignal = unix.SIGUSR2 })
		f.start(t)
		var procs []*fakeProcess
		for i := range 3 {
			procs = append(procs, f.running(t, i, 0))
		}
		if err := f.stop(t); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		for i, p := range procs {
			if got := p.Signals(); !slices.Equal(got, []unix.Signal{unix.SIGUSR2}) {
				t.Errorf("worker %d got signals %v, want only the stop signal SIGUSR2", i, got)
			}
			if !p.isDeleted() {
				t.Errorf("worker %d's container was not deleted", i)
			}
		}
		for _, st := range f.pool.Status() {
			if st.State != Stopped || st.Pid != 0 {
				t.Errorf("after Run: %+v, want stopped without pid", st)
			}
		}
	})

	t.Run("kill after the stop timeout", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 2, func(c *Config) { c.StopTimeout = 20 * time.Millisecond })
		f.start(t)
		obeys, ignores := f.running(t, 0, 0), f.running(t, 1, 0)
		ignores.ignoreSignals()
		if err := f.stop(t); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if got := obeys.Signals(); !slices.Equal(got, []unix.Signal{unix.SIGTERM}) {
			t.Errorf("worker 0 got %v, want [SIGTERM]", got)
		}
		if got := ignores.Signals(); !slices.Equal(got, []unix.Signal{unix.SIGTERM, unix.SIGKILL}) {
			t.Errorf("worker 1 got %v, want [SIGTERM SIGKILL]", got)
		}
		if ev := f.rec.next(t, 1, Stopped); ev.Reason != ReasonSignaled {
			t.Errorf("worker 1 Stopped reason %q, want %q", ev.Reason, ReasonSignaled)
		}
		if !ignores.isDeleted() {
			t.Error("the killed container was not deleted")
		}
	})

	t.Run("KillNow skips the stop timeout", func(t *testing.T) {
		t.Parallel()
		// An hour: only KillNow can end this stop in the test's time.
		f := newFixture(t, 1, func(c *Config) { c.StopTimeout = time.Hour })
		f.start(t)
		p := f.running(t, 0, 0)
		p.ignoreSignals()
		f.cancel()
		p.waitSignals(t, unix.SIGTERM)
		f.pool.KillNow()
		if err := f.wait(t); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if got := p.Signals(); !slices.Equal(got, []unix.Signal{unix.SIGTERM, unix.SIGKILL}) {
			t.Errorf("got %v, want [SIGTERM SIGKILL]", got)
		}
	})

	t.Run("Run waits for every Delete", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 3, nil)
		hold := make(chan struct{})
		f.rt.holdDelete = hold
		f.start(t)
		for i := range 3 {
			f.running(t, i, 0)
		}
		f.cancel()
		waitFor(t, "3 Delete calls", func() bool {
			f.rt.mu.Lock()
			defer f.rt.mu.Unlock()
			return f.rt.deleting == 3
		})
		if f.runReturned() {
			t.Error("Run returned while Delete calls were still running")
		}
		close(hold)
		if err := f.wait(t); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		for _, p := range f.rt.all() {
			if !p.isDeleted() {
				t.Errorf("Run returned before %s (pid %d) was deleted", p.id, p.pid)
			}
		}
	})
}
