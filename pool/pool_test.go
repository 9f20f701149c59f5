package pool

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/container"
)

// wantEnv checks the per-worker part of a container's options.
func wantEnv(t *testing.T, p *fakeProcess, i int, extra ...string) {
	t.Helper()
	want := append(append([]string{"A=1"}, extra...), "MRTD_WORKER="+strconv.Itoa(i), "MRTD_INSTANCE=web")
	if !slices.Equal(p.opts.Env, want) {
		t.Errorf("%s env = %q, want %q", p.id, p.opts.Env, want)
	}
	if p.opts.Hostname != workerID(p.id) {
		t.Errorf("%s hostname = %q, want the worker's id, the same in both slots", p.id, p.opts.Hostname)
	}
}

func TestWorkersGetTheirIDsAndEnv(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2, func(c *Config) { c.WorkerEnv = map[int][]string{1: {"ROLE=second"}} })
	f.start(t)
	wantEnv(t, f.running(t, 0, 0), 0)
	wantEnv(t, f.running(t, 1, 0), 1, "ROLE=second")
	if env := f.cfg.Template.Env; !slices.Equal(env, []string{"A=1"}) {
		t.Errorf("the template's env changed to %q", env)
	}
}

func TestScale(t *testing.T) {
	t.Parallel()

	t.Run("up", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 1, func(c *Config) { c.WorkerEnv = map[int][]string{2: {"ROLE=third"}} })
		f.start(t)
		p0 := f.running(t, 0, 0)
		if err := f.pool.Scale(context.Background(), 3); err != nil {
			t.Fatalf("Scale(3) = %v", err)
		}
		if d := f.pool.Desired(); d != 3 {
			t.Errorf("Desired = %d, want 3", d)
		}
		wantEnv(t, f.running(t, 1, 0), 1)
		wantEnv(t, f.running(t, 2, 0), 2, "ROLE=third")
		if len(p0.Signals()) != 0 || f.rt.starts("web-0") != 1 {
			t.Errorf("scaling up touched worker 0 (signals %v, %d starts)", p0.Signals(), f.rt.starts("web-0"))
		}
	})

	t.Run("down stops the highest", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 4, nil)
		f.start(t)
		var procs []*fakeProcess
		for i := range 4 {
			procs = append(procs, f.running(t, i, 0))
		}
		if err := f.pool.Scale(context.Background(), 2); err != nil {
			t.Fatalf("Scale(2) = %v", err)
		}
		// Scale returns once the removed workers stopped.
		for i, p := range procs {
			removed := i >= 2
			if got := len(p.Signals()) > 0; got != removed {
				t.Errorf("worker %d signalled: %v, want %v", i, got, removed)
			}
			if p.isDeleted() != removed {
				t.Errorf("worker %d deleted: %v, want %v", i, p.isDeleted(), removed)
			}
		}
		if got := workers(f.pool.Status()); !slices.Equal(got, []int{0, 1}) {
			t.Errorf("Status lists workers %v, want [0 1]", got)
		}
		if err := f.pool.Restart(2); err == nil {
			t.Error("Restart(2) after scaling to 2 = nil, want an error")
		}
		// Back up: the ids come back.
		if err := f.pool.Scale(context.Background(), 3); err != nil {
			t.Fatalf("Scale(3) = %v", err)
		}
		wantEnv(t, f.running(t, 2, 1), 2)
	})

	t.Run("refuses fewer than one", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 1, nil)
		f.start(t)
		for _, n := range []int{0, -1} {
			if err := f.pool.Scale(context.Background(), n); err == nil {
				t.Errorf("Scale(%d) = nil, want an error", n)
			}
		}
		if d := f.pool.Desired(); d != 1 {
			t.Errorf("Desired = %d after refused scales, want 1", d)
		}
	})

	t.Run("during backoff", func(t *testing.T) {
		t.Parallel()
		// A long backoff, so that the workers are surely in it when the
		// test acts: Restart and Scale must end it, not wait it out.
		f := newFixture(t, 2, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour })
		// The first failure restarts at once; the second backs off.
		f.rt.failStarts("web-0", errors.New("no luck"), errors.New("no luck"))
		f.rt.failStarts("web-1", errors.New("no luck"), errors.New("no luck"))
		f.start(t)
		for i := range 2 {
			f.rec.next(t, i, BackingOff)
			if ev := f.rec.next(t, i, BackingOff); ev.Delay < 48*time.Minute {
				t.Fatalf("worker %d: second backoff %v, want an hour ±20%%", i, ev.Delay)
			}
		}

		// Up while worker 0 backs off: the new worker starts at once.
		if err := f.pool.Scale(context.Background(), 3); err != nil {
			t.Fatalf("Scale(3) = %v", err)
		}
		f.running(t, 2, 0)
		// Down removes worker 2 and worker 1, which is in its backoff.
		if err := f.pool.Scale(context.Background(), 1); err != nil {
			t.Fatalf("Scale(1) = %v", err)
		}
		if ev := f.rec.next(t, 1, Stopped); ev.Reason != ReasonError {
			t.Errorf("worker 1 stopped with reason %q, want %q (its last run)", ev.Reason, ReasonError)
		}
		if n := f.rt.starts("web-1"); n != 0 {
			t.Errorf("worker 1 started %d containers, want none", n)
		}
		st := f.pool.Status()
		if len(st) != 1 || st[0].State != BackingOff {
			t.Errorf("Status = %+v, want only worker 0, backing off", st)
		}
		// Restart ends worker 0's backoff.
		if err := f.pool.Restart(0); err != nil {
			t.Fatalf("Restart(0) = %v", err)
		}
		f.running(t, 0, 0)
	})
}

func workers(st []Status) []int {
	var out []int
	for _, s := range st {
		out = append(out, s.Worker)
	}
	return out
}

func TestRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3, nil)
	f.start(t)
	var procs []*fakeProcess
	for i := range 3 {
		procs = append(procs, f.running(t, i, 0))
	}
	if err := f.pool.Restart(1); err != nil {
		t.Fatalf("Restart(1) = %v", err)
	}
	next := f.running(t, 1, 1)
	if got := procs[1].Signals(); !slices.Equal(got, []unix.Signal{unix.SIGTERM}) {
		t.Errorf("the replaced container got %v, want [SIGTERM]", got)
	}
	waitFor(t, "the replaced container deleted", procs[1].isDeleted)
	wantEnv(t, next, 1)
	if st := f.pool.Status()[1]; st.Restarts != 1 || st.Pid != next.pid {
		t.Errorf("worker 1 status %+v, want 1 restart, pid %d", st, next.pid)
	}
	for _, i := range []int{0, 2} {
		if len(procs[i].Signals()) != 0 || f.rt.starts(f.id(i)) != 1 {
			t.Errorf("Restart(1) touched worker %d", i)
		}
	}

	for _, i := range []int{3, -1, 100} {
		if err := f.pool.Restart(i); err == nil {
			t.Errorf("Restart(%d) of a pool of 3 = nil, want an error", i)
		}
	}
}

func TestReconfigure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3, func(c *Config) { c.WorkerEnv = map[int][]string{1: {"ROLE=a"}} })
	f.start(t)
	for i := range 3 {
		f.running(t, i, 0)
	}
	runs := []int{1, 1, 1} // containers started per worker

	// Copies of equal content: nothing changes.
	same := f.cfg.Template
	same.Args = slices.Clone(same.Args)
	same.Env = slices.Clone(same.Env)
	steps := []struct {
		name      string
		template  container.Options
		workerEnv map[int][]string
		restarted []int
	}{
		{"nothing", same, map[int][]string{1: {"ROLE=a"}}, nil},
		{"one worker's env", same, map[int][]string{1: {"ROLE=b"}}, []int{1}},
		{"a worker's env added", same, map[int][]string{1: {"ROLE=b"}, 2: {"ROLE=c"}}, []int{2}},
		{"the template", withArgs(same, "/bin/serve", "--port", "81"), map[int][]string{1: {"ROLE=b"}, 2: {"ROLE=c"}}, []int{0, 1, 2}},
	}
	for _, step := range steps {
		got := f.pool.Reconfigure(step.template, step.workerEnv, nil)
		if !slices.Equal(got, step.restarted) {
			t.Errorf("%s: Reconfigure restarted %v, want %v", step.name, got, step.restarted)
		}
		for _, i := range step.restarted {
			p := f.running(t, i, runs[i])
			runs[i]++
			if !slices.Equal(p.opts.Args, step.template.Args) {
				t.Errorf("%s: worker %d runs %q, want %q", step.name, i, p.opts.Args, step.template.Args)
			}
			wantEnv(t, p, i, step.workerEnv[i]...)
		}
		for i := range 3 {
			if n := f.rt.starts(f.id(i)); n != runs[i] {
				t.Errorf("%s: worker %d has %d starts, want %d", step.name, i, n, runs[i])
			}
		}
	}
}

func withArgs(o container.Options, args ...string) container.Options {
	o.Args = args
	return o
}

func TestRemoveStale(t *testing.T) {
	t.Parallel()

	t.Run("first", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 1, func(c *Config) { c.Instance = "api" })
		f.rt.stale = []string{"api-0", "api-7"}
		f.start(t)
		f.running(t, 0, 0)
		f.rt.mu.Lock()
		calls, before := f.rt.staleOwned, f.rt.startedPre
		f.rt.mu.Unlock()
		if len(calls) != 1 {
			t.Fatalf("RemoveStale called %d times, want once", len(calls))
		}
		// Its own ids, both slots; not another instance's whose name
		// starts with "api-".
		for id, want := range map[string]bool{
			"api-0": true, "api-7.1": true, "api-12": true,
			"api-v2-0": false, "api-0-1": false, "api-": false, "api-.1": false, "api-1.2": false, "web-0": false, "api0": false,
		} {
			if got := calls[0](id); got != want {
				t.Errorf("RemoveStale's owned(%q) = %v, want %v", id, got, want)
			}
		}
		if before != 0 {
			t.Errorf("%d containers started before RemoveStale", before)
		}
	})

	t.Run("its error ends Run", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 2, nil)
		stale := errors.New("runc list: permission denied")
		f.rt.staleErr = stale
		f.start(t)
		if err := f.wait(t); !errors.Is(err, stale) {
			t.Errorf("Run = %v, want %v", err, stale)
		}
		if n := len(f.rt.all()); n != 0 {
			t.Errorf("%d containers started after RemoveStale failed", n)
		}
	})
}

func TestUnusable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		path func(*fixture) string
	}{
		{"rootfs", func(f *fixture) string { return f.cfg.Template.Rootfs }},
		{"runc", func(f *fixture) string { return f.rt.runc }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 3, nil)
			f.start(t)
			var procs []*fakeProcess
			for i := range 3 {
				procs = append(procs, f.running(t, i, 0))
			}
			path := tc.path(f)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			procs[1].exit(exitCode(1)) // its restart finds the path gone

			err := f.wait(t)
			if !errors.Is(err, ErrUnusable) {
				t.Errorf("Run = %v, want an error wrapping ErrUnusable", err)
			}
			var unusable *UnusableError
			if !errors.As(err, &unusable) {
				t.Fatalf("Run = %v, want an *UnusableError", err)
			}
			if unusable.Path != path || !errors.Is(err, os.ErrNotExist) {
				t.Errorf("UnusableError{Path: %q, Err: %v}, want path %q, not exist", unusable.Path, unusable.Err, path)
			}
			if ev := f.rec.next(t, 1, Stopped); !errors.Is(ev.LastExit, ErrUnusable) {
				t.Errorf("worker 1 Stopped with %v, want ErrUnusable", ev.LastExit)
			}
			for _, i := range []int{0, 2} {
				if got := procs[i].Signals(); !slices.Equal(got, []unix.Signal{unix.SIGTERM}) || !procs[i].isDeleted() {
					t.Errorf("worker %d: signals %v, deleted %v; want stopped and deleted", i, got, procs[i].isDeleted())
				}
			}
			if n := f.rt.starts("web-1"); n != 1 {
				t.Errorf("worker 1 started %d containers, want 1", n)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	// 12 workers: sorted by name, web-10 would come before web-2.
	f := newFixture(t, 12, nil)
	f.rt.failStarts("web-10", &container.StartError{ID: "web-10", Reason: "no"})
	f.start(t)
	var procs []*fakeProcess
	for i := range 12 {
		procs = append(procs, f.running(t, i, 0))
	}
	procs[2].exit(exitCode(4))
	p2 := f.running(t, 2, 1)

	st := f.pool.Status()
	if got := workers(st); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}) {
		t.Fatalf("Status lists workers %v, want 0 to 11 in order", got)
	}
	for i, s := range st {
		want := Status{Worker: i, ContainerID: f.id(i), State: Running, Pid: procs[i].pid}
		switch i {
		case 2:
			// The second container goes in the worker's second slot.
			want.ContainerID = f.id(i) + ".1"
			want.Pid, want.Restarts, want.Reason = p2.pid, 1, ReasonExitedNonzero
		case 10:
			want.Restarts, want.Reason = 1, ReasonStartFailed
		}
		got := Status{Worker: s.Worker, ContainerID: s.ContainerID, State: s.State, Pid: s.Pid, Restarts: s.Restarts, Reason: s.Reason}
		if got != want {
			t.Errorf("Status()[%d] = %+v, want %+v", i, got, want)
		}
		if s.Since.IsZero() {
			t.Errorf("Status()[%d] has no Since", i)
		}
	}
	if err := f.stop(t); err != nil {
		t.Errorf("Run = %v", err)
	}
	for _, s := range f.pool.Status() {
		if s.State != Stopped {
			t.Errorf("worker %d is %s after Run, want stopped", s.Worker, s.State)
		}
	}
}
