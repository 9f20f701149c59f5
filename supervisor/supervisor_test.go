package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock advances only when told to.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clock *fakeClock
	c     chan time.Time
	at    time.Time
	done  bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, c: make(chan time.Time, 1), at: c.now.Add(d)}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves time on by d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if !t.done && !t.at.After(c.now) {
			t.done = true
			t.c <- c.now
		}
	}
}

// scripted is a service whose runs are driven by the test: each run reports
// started, then ends with whatever the test sends on end (or when ctx is
// cancelled).
type scripted struct {
	end  chan error
	runs chan int // run number, sent when a run starts
	n    int
}

func newScripted() *scripted {
	return &scripted{end: make(chan error), runs: make(chan int, 100)}
}

func (s *scripted) Serve(ctx context.Context, started func(pid int)) error {
	s.n++
	started(1000 + s.n)
	s.runs <- s.n
	select {
	case err := <-s.end:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failing fails at once, every time.
type failing struct{ err error }

func (f failing) Serve(ctx context.Context, started func(pid int)) error { return f.err }

// events collects a Hook's events per service.
type events struct {
	mu sync.Mutex
	ch map[string]chan Event
}

func newEvents(names ...string) *events {
	e := &events{ch: map[string]chan Event{}}
	for _, n := range names {
		e.ch[n] = make(chan Event, 1000)
	}
	return e
}

func (e *events) hook(ev Event) { e.ch[ev.Name] <- ev }

// next returns the next event of name in state, skipping others.
func (e *events) next(t *testing.T, name string, state State) Event {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case ev := <-e.ch[name]:
			if ev.State == state {
				return ev
			}
		case <-timeout.C:
			t.Fatalf("no %s event for %s", state, name)
		}
	}
}

func TestBackoffPerServiceAndSiblingsUntouched(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	ev := newEvents("bad", "good")
	s := New(Spec{
		BackoffMin: time.Second, BackoffMax: 8 * time.Second, Jitter: 0.2, HealthyAfter: time.Minute,
		Clock: clock, Rand: func() float64 { return 0.75 }, Hook: ev.hook,
	})
	good := newScripted()
	s.Add("bad", failing{errors.New("exit status 1")})
	s.Add("good", good)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	ev.next(t, "good", Running)
	// At once, then with jitter at rnd=0.75, +10%: 1.1s, 2.2s, 4.4s, 8.8s,
	// then capped.
	for i, want := range []time.Duration{0, 1100, 2200, 4400, 8800, 8800, 8800} {
		e := ev.next(t, "bad", BackingOff)
		if e.Delay != want*time.Millisecond {
			t.Fatalf("backoff %d: %v, want %v", i, e.Delay, want*time.Millisecond)
		}
		if e.Restarts != i {
			t.Fatalf("backoff %d: %d restarts, want %d", i, e.Restarts, i)
		}
		if e.LastExit == nil || e.LastExit.Error() != "exit status 1" {
			t.Fatalf("last exit %v", e.LastExit)
		}
		clock.Advance(e.Delay)
	}
	for _, st := range s.Status() {
		if st.Name == "good" && (st.Restarts != 0 || st.State != Running || st.Pid != 1001) {
			t.Fatalf("healthy sibling: %+v", st)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	for _, st := range s.Status() {
		if st.State != Stopped {
			t.Errorf("%s is %s after Run returned", st.Name, st.State)
		}
	}
}

func TestDecayAfterHealthyRun(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	ev := newEvents("w")
	s := New(Spec{BackoffMin: time.Second, BackoffMax: time.Minute, Jitter: -1, HealthyAfter: 30 * time.Second, Clock: clock, Hook: ev.hook})
	w := newScripted()
	s.Add("w", w)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	for i, step := range []struct {
		ranFor time.Duration
		want   time.Duration
	}{
		{0, 0}, // the first failure: at once
		{0, time.Second},
		{0, 2 * time.Second},
		{0, 4 * time.Second},
		{31 * time.Second, 0}, // healthy: at once again
		{0, time.Second},
	} {
		ev.next(t, "w", Running)
		clock.Advance(step.ranFor)
		w.end <- fmt.Errorf("crash %d", i)
		e := ev.next(t, "w", BackingOff)
		if e.Delay != step.want {
			t.Fatalf("step %d: delay %v, want %v", i, e.Delay, step.want)
		}
		clock.Advance(e.Delay)
	}
	cancel()
	<-done
}

func TestDoNotRestartStopsEverything(t *testing.T) {
	ev := newEvents("fatal", "other")
	s := New(Spec{Hook: ev.hook})
	other := newScripted()
	s.Add("fatal", failing{fmt.Errorf("rootfs is gone: %w", ErrDoNotRestart)})
	s.Add("other", other)
	err := s.Run(context.Background())
	if !errors.Is(err, ErrDoNotRestart) {
		t.Fatalf("Run returned %v, want ErrDoNotRestart", err)
	}
	for _, st := range s.Status() {
		if st.State != Stopped {
			t.Errorf("%s is %s", st.Name, st.State)
		}
	}
}

func TestOnFailurePolicy(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	ev := newEvents("w")
	s := New(Spec{Restart: OnFailure, Jitter: -1, Clock: clock, Hook: ev.hook})
	w := newScripted()
	s.Add("w", w)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	ev.next(t, "w", Running)
	w.end <- errors.New("exit status 2")
	if d := ev.next(t, "w", BackingOff).Delay; d != 0 {
		t.Fatalf("first failure: delay %v, want none", d)
	}
	ev.next(t, "w", Running)
	w.end <- nil // clean exit: not restarted
	ev.next(t, "w", Stopped)
	if st := s.Status()[0]; st.State != Stopped || st.Restarts != 1 || st.LastExit != nil {
		t.Fatalf("status %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAlwaysRestartsCleanExits(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	ev := newEvents("w")
	s := New(Spec{BackoffMin: time.Second, Jitter: -1, Clock: clock, Hook: ev.hook})
	w := newScripted()
	s.Add("w", w)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for i := 0; i < 3; i++ {
		ev.next(t, "w", Running)
		w.end <- nil
		if d := ev.next(t, "w", BackingOff).Delay; d != time.Second {
			t.Fatalf("clean exit %d: delay %v, want the minimum", i, d)
		}
		clock.Advance(time.Second)
	}
	ev.next(t, "w", Running)
	cancel()
	<-done
	if st := s.Status()[0]; st.Restarts != 3 {
		t.Fatalf("restarts %d, want 3", st.Restarts)
	}
}

func TestAddRemoveRestartWhileRunning(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	ev := newEvents("a", "b")
	s := New(Spec{BackoffMin: time.Hour, Jitter: -1, Clock: clock, Hook: ev.hook})
	a := newScripted()
	s.Add("a", a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	ev.next(t, "a", Running)

	// Add while running: it starts at once.
	b := newScripted()
	s.Add("b", b)
	ev.next(t, "b", Running)

	// Restart: a new run at once, without the hour of backoff, and a's
	// failure count is untouched.
	if err := s.Restart("a"); err != nil {
		t.Fatal(err)
	}
	if e := ev.next(t, "a", Running); e.Restarts != 1 || e.Pid != 1002 {
		t.Fatalf("after Restart: %+v", e.Status)
	}
	if err := s.Restart("nope"); !errors.Is(err, ErrUnknownService) {
		t.Fatalf("Restart of an unknown service: %v", err)
	}

	// Remove: b stops and is forgotten; a is untouched.
	if err := s.Remove(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	if len(st) != 1 || st[0].Name != "a" || st[0].State != Running || st[0].Restarts != 1 {
		t.Fatalf("status after Remove: %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(context.Background(), "a"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Remove after Run: %v", err)
	}
}

func TestRestartEndsBackoff(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	ev := newEvents("w")
	s := New(Spec{BackoffMin: time.Hour, BackoffMax: time.Hour, Jitter: -1, Clock: clock, Hook: ev.hook})
	w := newScripted()
	s.Add("w", w)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	ev.next(t, "w", Running)
	w.end <- errors.New("crash") // the first failure: at once
	ev.next(t, "w", Running)
	w.end <- errors.New("crash")
	if d := ev.next(t, "w", BackingOff).Delay; d != time.Hour {
		t.Fatalf("backoff %v", d)
	}
	s.Restart("w")
	ev.next(t, "w", Running) // no clock advance needed
	cancel()
	<-done
}

// blocking is a service that runs until cancelled.
type blocking struct{}

func (blocking) Serve(ctx context.Context, started func(int)) error {
	started(1)
	<-ctx.Done()
	return nil
}

func TestAddRefusesTakenNames(t *testing.T) {
	t.Parallel()
	s := New(Spec{})
	if err := s.Add("a", blocking{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("a", blocking{}); err == nil {
		t.Fatal("a second service named a was accepted before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// While Run runs, a taken name is refused by Run itself.
	for deadline := time.Now().Add(10 * time.Second); s.Status()[0].State != Running; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a never ran")
		}
	}
	if err := s.Add("a", blocking{}); err == nil || errors.Is(err, ErrNotRunning) {
		t.Fatalf("a second service named a while running: %v, want an error naming it", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestAddAfterRunEndedFailsAtOnce: an Add or Remove racing with Run's
// return never blocks; after it, both fail with ErrNotRunning.
func TestAddAfterRunEndedFailsAtOnce(t *testing.T) {
	t.Parallel()
	for i := 0; i < 200; i++ {
		s := New(Spec{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		added := make(chan error, 1)
		go func() { added <- s.Add(fmt.Sprint("w", i), blocking{}) }()
		cancel()
		select {
		case <-added:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Add blocked while Run returned", i)
		}
		<-done
		if err := s.Add("late", blocking{}); !errors.Is(err, ErrNotRunning) {
			t.Fatalf("Add after Run returned: %v, want ErrNotRunning", err)
		}
		if err := s.Remove(context.Background(), "late"); !errors.Is(err, ErrNotRunning) {
			t.Fatalf("Remove after Run returned: %v, want ErrNotRunning", err)
		}
	}
}
