package pool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mrt-project/mrt/container"
)

// portHook is a PerWorker as the daemon's templates make one: worker i gets
// PORT=base+i in place of the template's PORT entry, and its own scratch
// directory; fail, when not nil, fails the workers it returns true for.
func portHook(base int, fail func(i int) bool) PerWorker {
	return func(i int, o *container.Options) error {
		if fail != nil && fail(i) {
			return errors.New("no value for this worker")
		}
		for k, kv := range o.Env {
			if strings.HasPrefix(kv, "PORT=") {
				o.Env[k] = fmt.Sprintf("PORT=%d", base+i)
			}
		}
		o.Binds = slices.Clone(o.Binds)
		for k := range o.Binds {
			o.Binds[k].Source = fmt.Sprintf("/srv/scratch/%d", i)
		}
		return nil
	}
}

// scratchTemplate adds to c's template the PORT entry and the bind whose
// source the hook replaces.
func scratchTemplate(c *Config) {
	c.Template.Env = []string{"A=1", "PORT={{add 9600 .Worker}}"}
	c.Template.Binds = []container.Bind{{Source: "/srv/scratch/{{.Worker}}", Destination: "/scratch"}}
}

// wantPort checks what portHook gave a container.
func wantPort(t *testing.T, p *fakeProcess, i, port int) {
	t.Helper()
	wantEnv(t, p, i, fmt.Sprintf("PORT=%d", port))
	if want := (container.Bind{Source: fmt.Sprintf("/srv/scratch/%d", i), Destination: "/scratch"}); len(p.opts.Binds) != 1 || p.opts.Binds[0] != want {
		t.Errorf("%s binds = %+v, want [%+v]", p.id, p.opts.Binds, want)
	}
}

func TestPerWorker(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3, func(c *Config) {
		scratchTemplate(c)
		c.PerWorker = portHook(9600, nil)
	})
	f.start(t)
	for i := range 3 {
		wantPort(t, f.running(t, i, 0), i, 9600+i)
	}
	// The hook changed copies: the template is as it was.
	if b, e := f.cfg.Template.Binds, f.cfg.Template.Env; b[0].Source != "/srv/scratch/{{.Worker}}" || e[1] != "PORT={{add 9600 .Worker}}" {
		t.Errorf("the template changed to binds %+v, env %q", b, e)
	}
	// A new worker gets its own values too.
	if err := f.pool.Scale(context.Background(), 4); err != nil {
		t.Fatalf("Scale(4) = %v", err)
	}
	wantPort(t, f.running(t, 3, 0), 3, 9603)
}

// TestPerWorkerError: a worker whose container the hook cannot make fails
// to start, with the hook's error as the reason, and backs off; the others
// run. A Reconfigure with a hook that works starts it.
func TestPerWorkerError(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, func(c *Config) {
		scratchTemplate(c)
		c.PerWorker = portHook(9600, func(i int) bool { return i == 2 })
	})
	f.start(t)
	wantPort(t, f.running(t, 0, 0), 0, 9600)
	// Scaling up to a worker the hook fails: no crash, no container.
	if err := f.pool.Scale(context.Background(), 3); err != nil {
		t.Fatalf("Scale(3) = %v", err)
	}
	wantPort(t, f.running(t, 1, 0), 1, 9601)
	ev := f.rec.next(t, 2, BackingOff)
	if ev.Reason != ReasonStartFailed || ev.StartReason != "no value for this worker" {
		t.Errorf("worker 2's event %+v, want a failed start with the hook's error", ev)
	}
	if n := f.rt.starts(f.id(2)); n != 0 {
		t.Errorf("worker 2 started %d containers, want none", n)
	}

	got := f.pool.Reconfigure(f.cfg.Template, nil, portHook(9600, nil))
	if !slices.Equal(got, []int{2}) {
		t.Errorf("Reconfigure restarted %v, want [2]", got)
	}
	wantPort(t, f.running(t, 2, 0), 2, 9602)
	for i := range 2 {
		if n := f.rt.starts(f.id(i)); n != 1 {
			t.Errorf("worker %d has %d starts, want 1", i, n)
		}
	}
}

// TestPerWorkerErrorRetried: each try of a worker the hook failed calls
// the hook again, so that what it lacked (a worker's own directory, made
// after the scale up) lets the worker start without a reload.
func TestPerWorkerErrorRetried(t *testing.T) {
	t.Parallel()
	var missing atomic.Bool
	missing.Store(true)
	f := newFixture(t, 2, func(c *Config) {
		scratchTemplate(c)
		c.PerWorker = portHook(9600, func(i int) bool { return i == 1 && missing.Load() })
	})
	f.start(t)
	f.running(t, 0, 0)
	f.rec.next(t, 1, BackingOff)
	f.rec.next(t, 1, BackingOff)
	missing.Store(false)
	wantPort(t, f.running(t, 1, 0), 1, 9601)
}

// TestReconfigurePerWorker: a reload restarts exactly the workers whose
// container, as the hook makes it, changed.
func TestReconfigurePerWorker(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3, func(c *Config) {
		scratchTemplate(c)
		c.PerWorker = portHook(9600, nil)
	})
	f.start(t)
	for i := range 3 {
		f.running(t, i, 0)
	}
	runs := []int{1, 1, 1}
	steps := []struct {
		name      string
		hook      PerWorker
		restarted []int
		port      func(i int) int
	}{
		{"the same values", portHook(9600, nil), nil, func(i int) int { return 9600 + i }},
		{"worker 1's value", func(i int, o *container.Options) error {
			base := 9600
			if i == 1 {
				base = 9700
			}
			return portHook(base, nil)(i, o)
		}, []int{1}, func(i int) int { return map[bool]int{true: 9701, false: 9600 + i}[i == 1] }},
		{"every value", portHook(9800, nil), []int{0, 1, 2}, func(i int) int { return 9800 + i }},
	}
	for _, step := range steps {
		got := f.pool.Reconfigure(f.cfg.Template, nil, step.hook)
		if !slices.Equal(got, step.restarted) {
			t.Errorf("%s: Reconfigure restarted %v, want %v", step.name, got, step.restarted)
		}
		for _, i := range step.restarted {
			wantPort(t, f.running(t, i, runs[i]), i, step.port(i))
			runs[i]++
		}
		for i := range 3 {
			if n := f.rt.starts(f.id(i)); n != runs[i] {
				t.Errorf("%s: worker %d has %d starts, want %d", step.name, i, n, runs[i])
			}
		}
	}
}
