package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/container"
)

// healthRecorder keeps every HealthEvent a pool's HealthHook receives.
type healthRecorder struct {
	mu     sync.Mutex
	events []HealthEvent
}

func (r *healthRecorder) hook(ev HealthEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// of returns worker's health events so far.
func (r *healthRecorder) of(worker int) []HealthEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []HealthEvent
	for _, ev := range r.events {
		if ev.Worker == worker {
			out = append(out, ev)
		}
	}
	return out
}

// healthFixture is a pool of workers with a health check every
// millisecond, Retries 2, over a fake runtime whose Exec checks that no
// command runs in a container that is not running.
func healthFixture(t *testing.T, workers int, edit func(*Config)) (*fixture, *healthRecorder) {
	t.Helper()
	hr := &healthRecorder{}
	f := newFixture(t, workers, func(c *Config) {
		c.Health = &HealthCheck{Cmd: []string{"/bin/check"}, Interval: time.Millisecond, Timeout: time.Second, Retries: 2}
		c.HealthHook = hr.hook
		if edit != nil {
			edit(c)
		}
	})
	return f, hr
}

// execIn answers Exec with answer, after checking the command runs in a
// container that was started and not deleted.
func (f *fixture) execIn(t *testing.T, answer func(id string) (container.ExecResult, error)) {
	f.rt.setExec(func(ctx context.Context, id string, args []string) (container.ExecResult, error) {
		f.rt.mu.Lock()
		ps := f.rt.procs[id]
		f.rt.mu.Unlock()
		if len(ps) == 0 || ps[len(ps)-1].isDeleted() {
			t.Errorf("health check %q in %s, which has no running container", args, id)
		}
		return answer(id)
	})
}

func TestUnhealthyWorkerIsRestarted(t *testing.T) {
	t.Parallel()
	f, hr := healthFixture(t, 3, nil)
	var sick atomic.Bool // worker 1's check fails in its first container
	f.execIn(t, func(id string) (container.ExecResult, error) {
		if id == "web-1" && sick.Load() && f.rt.starts(id) == 1 {
			return container.ExecResult{ExitCode: 1, Output: []byte("not ok\n")}, nil
		}
		return container.ExecResult{Output: []byte("ok\n")}, nil
	})
	f.start(t)
	var procs []*fakeProcess
	for i := range 3 {
		procs = append(procs, f.running(t, i, 0))
		waitFor(t, fmt.Sprintf("worker %d healthy", i), func() bool { return f.pool.Status()[i].Health.Health == HealthHealthy })
	}
	sick.Store(true)

	ev := f.rec.next(t, 1, BackingOff)
	var uerr *UnhealthyError
	if ev.Reason != ReasonUnhealthy || !errors.As(ev.LastExit, &uerr) || uerr.Failures != 2 || uerr.Output != "not ok" {
		t.Fatalf("worker 1 backs off with reason %q, last exit %v; want unhealthy after 2 failures saying not ok", ev.Reason, ev.LastExit)
	}
	if ev.LastExit.Error() != "unhealthy: 2 health checks in a row failed" {
		t.Errorf("last exit %q", ev.LastExit.Error())
	}
	// Stopped as on shutdown: the stop signal, which the fake obeys.
	if sig := procs[1].Signals(); len(sig) != 1 || sig[0] != unix.SIGTERM {
		t.Errorf("the unhealthy container got %v, want SIGTERM", sig)
	}
	if uerr.Exit.Status != exitCode(0) {
		t.Errorf("UnhealthyError.Exit %v, want the stopped container's exit 0", uerr.Exit.Status)
	}
	// Healthy for long before, so at once.
	if ev.Delay != 0 {
		t.Errorf("the first unhealthy restart waits %v, want none", ev.Delay)
	}
	next := f.running(t, 1, 1)
	if next.pid == procs[1].pid {
		t.Errorf("worker 1 runs pid %d after pid %d", next.pid, procs[1].pid)
	}
	// Deleted beside the restart, not before it.
	waitFor(t, "the unhealthy container deleted", procs[1].isDeleted)
	// The failures, as the hook heard them, then healthy again.
	var streaks []int
	for _, ev := range hr.of(1) {
		if ev.Failed {
			streaks = append(streaks, ev.FailingStreak)
		}
	}
	if len(streaks) != 2 || streaks[0] != 1 || streaks[1] != 2 {
		t.Errorf("worker 1's failed checks had streaks %v, want [1 2]", streaks)
	}
	waitFor(t, "worker 1 healthy again", func() bool { return f.pool.Status()[1].Health.Health == HealthHealthy })

	// The siblings were not touched.
	for _, i := range []int{0, 2} {
		if len(procs[i].Signals()) != 0 || f.rt.starts(f.id(i)) != 1 {
			t.Errorf("worker %d: signals %v, %d starts; want none and one", i, procs[i].Signals(), f.rt.starts(f.id(i)))
		}
		for _, ev := range hr.of(i) {
			if ev.Failed {
				t.Errorf("worker %d had a failed check: %+v", i, ev)
			}
		}
	}
	st := f.pool.Status()
	if st[1].Restarts != 1 || st[1].Reason != ReasonUnhealthy || st[0].Restarts != 0 || st[2].Restarts != 0 {
		t.Errorf("Status = %+v", st)
	}
}

func TestHealthStartPeriod(t *testing.T) {
	t.Parallel()
	f, hr := healthFixture(t, 1, func(c *Config) { c.Health.StartPeriod = time.Hour })
	var ok atomic.Bool
	f.execIn(t, func(string) (container.ExecResult, error) {
		if ok.Load() {
			return container.ExecResult{}, nil
		}
		return container.ExecResult{}, errors.New("cannot exec: /bin/check not found")
	})
	f.start(t)
	p := f.running(t, 0, 0)
	// Many failures, none counted: still starting, not restarted.
	waitFor(t, "five failed checks", func() bool { return len(hr.of(0)) >= 5 })
	for _, ev := range hr.of(0)[:5] {
		if !ev.Failed || ev.Counted || ev.Health != HealthStarting || ev.FailingStreak != 0 || ev.LastExitCode != -1 ||
			ev.LastOutput != "cannot exec: /bin/check not found" {
			t.Fatalf("a failure in the start period: %+v", ev)
		}
	}
	if st := f.pool.Status()[0]; st.Health.Health != HealthStarting || st.Health.LastCheck.IsZero() || st.Health.LastOutput == "" {
		t.Errorf("Status health %+v, want starting with the last check", st.Health)
	}
	// A success in the start period makes it healthy.
	ok.Store(true)
	waitFor(t, "healthy", func() bool { return f.pool.Status()[0].Health.Health == HealthHealthy })
	if len(p.Signals()) != 0 || f.rt.starts("web-0") != 1 {
		t.Errorf("a worker whose checks failed in the start period was stopped (%v) or restarted", p.Signals())
	}
	if st := f.pool.Status()[0].Health; st.LastExitCode != 0 || st.LastOutput != "" || st.FailingStreak != 0 {
		t.Errorf("health after a success %+v", st)
	}
}

func TestHealthTimeoutFails(t *testing.T) {
	t.Parallel()
	f, _ := healthFixture(t, 1, func(c *Config) { c.Health.Retries = 1 })
	f.execIn(t, func(string) (container.ExecResult, error) {
		return container.ExecResult{TimedOut: true, ExitCode: 137, Output: []byte("slow")}, nil
	})
	f.start(t)
	ev := f.rec.next(t, 0, BackingOff)
	if ev.Reason != ReasonUnhealthy {
		t.Fatalf("reason %q, want unhealthy", ev.Reason)
	}
	if h := f.pool.Status()[0].Health; h.LastExitCode != -1 || !strings.HasPrefix(h.LastOutput, "timed out after 1s: slow") {
		t.Errorf("health %+v, want the timeout in the last check", h)
	}
}

// TestNoHealthCheckOutsideARun: checks run only while the container runs:
// none while it backs off (the fake's Exec fails the test otherwise), and
// the health starts over with each run.
func TestNoHealthCheckOutsideARun(t *testing.T) {
	t.Parallel()
	f, _ := healthFixture(t, 1, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour })
	f.execIn(t, func(string) (container.ExecResult, error) { return container.ExecResult{}, nil })
	f.start(t)
	p := f.running(t, 0, 0)
	waitFor(t, "checks", func() bool { return f.rt.execCount("web-0") >= 3 })
	// The first exit restarts at once, the restart fails, and the
	// second failure backs off for an hour.
	f.rt.failStarts("web-0", errors.New("no luck"))
	p.exit(exitCode(1))
	f.rec.next(t, 0, BackingOff)
	if ev := f.rec.next(t, 0, BackingOff); ev.Delay < 48*time.Minute {
		t.Fatalf("second backoff %v", ev.Delay)
	}
	n := f.rt.execCount("web-0")
	if st := f.pool.Status()[0]; st.State != BackingOff || st.Health.Health != HealthHealthy {
		t.Errorf("status %+v, want backing off, healthy as its last run ended", st)
	}
	f.pool.Restart(0)
	f.running(t, 0, 1)
	waitFor(t, "checks of the new container", func() bool { return f.rt.execCount("web-0") > n })
}

func TestFirstFailureRestartsAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour })
	f.start(t)
	p0, p1 := f.running(t, 0, 0), f.running(t, 1, 0)
	p0.exit(exitCode(2))
	if ev := f.rec.next(t, 0, BackingOff); ev.Delay != 0 || ev.Reason != ReasonExitedNonzero {
		t.Fatalf("first failure: delay %v, reason %q; want none, exited_nonzero", ev.Delay, ev.Reason)
	}
	// No hour of backoff: it runs again.
	again := f.running(t, 0, 1)
	again.exit(exitCode(2))
	if ev := f.rec.next(t, 0, BackingOff); ev.Delay < 48*time.Minute {
		t.Fatalf("second failure in a row: delay %v, want the backoff (an hour ±20%%)", ev.Delay)
	}
	if len(p1.Signals()) != 0 || f.rt.starts("web-1") != 1 {
		t.Errorf("the sibling was touched: %v, %d starts", p1.Signals(), f.rt.starts("web-1"))
	}
}

func TestOOMReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		oom    bool
		status unix.WaitStatus
		reason Reason
		exit   string
	}{
		{"killed and counted", true, killedBy(unix.SIGKILL), ReasonOOM, "killed by signal SIGKILL: out of memory"},
		{"killed, not counted", false, killedBy(unix.SIGKILL), ReasonSignaled, "killed by signal SIGKILL"},
		{"counted, but another signal", true, killedBy(unix.SIGSEGV), ReasonSignaled, "killed by signal SIGSEGV"},
		{"counted, but an exit", true, exitCode(1), ReasonExitedNonzero, "exit status 1"},
		// --init reports its command's SIGKILL as exit status 137.
		{"137 through an init, counted", true, exitCode(137), ReasonOOM, "exit status 137: out of memory"},
		{"137 through an init, not counted", false, exitCode(137), ReasonExitedNonzero, "exit status 137"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 1, nil)
			f.start(t)
			p := f.running(t, 0, 0)
			p.mu.Lock()
			p.oom = tc.oom
			p.mu.Unlock()
			p.exit(tc.status)
			ev := f.rec.next(t, 0, BackingOff)
			if ev.Reason != tc.reason || ev.LastExit == nil || ev.LastExit.Error() != tc.exit {
				t.Errorf("reason %q, exit %v; want %q, %q", ev.Reason, ev.LastExit, tc.reason, tc.exit)
			}
		})
	}
	// A container the pool killed itself (stop timeout) is never oom.
	t.Run("killed by the pool", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 1, func(c *Config) { c.StopTimeout = time.Millisecond })
		f.start(t)
		p := f.running(t, 0, 0)
		p.ignoreSignals()
		p.mu.Lock()
		p.oom = true
		p.mu.Unlock()
		f.stop(t)
		if ev := f.rec.next(t, 0, Stopped); ev.Reason != ReasonSignaled {
			t.Errorf("stopped with reason %q, want signaled", ev.Reason)
		}
	})
}

func TestCleanOutput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", MaxHealthOutput) // 2 bytes each
	for in, want := range map[string]string{
		"ok\n":          "ok",
		"a\nb\n\n":      "a\nb",
		"bad \xff byte": "bad \uFFFD byte",
		long:            long[:MaxHealthOutput],
	} {
		got := cleanOutput(in)
		if got != want || len(got) > MaxHealthOutput {
			t.Errorf("cleanOutput(%.20q) = %.20q (%d bytes), want %.20q", in, got, len(got), want)
		}
	}
}
