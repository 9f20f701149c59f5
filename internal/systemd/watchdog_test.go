package systemd

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// fakeClock hands the test each timer the watchdog starts, to fire when
// the test chooses: no test waits on real ticks.
type fakeClock struct {
	timers chan fakeTimer
}

type fakeTimer struct {
	d time.Duration
	c chan time.Time
}

func (f fakeTimer) fire() { f.c <- time.Time{} }

func (f *fakeClock) newTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := fakeTimer{d: d, c: make(chan time.Time, 1)}
	f.timers <- t
	return t.c, func() bool { return true }
}

// next is the next timer the watchdog starts.
func (f *fakeClock) next(t *testing.T) fakeTimer {
	t.Helper()
	select {
	case tm := <-f.timers:
		return tm
	case <-time.After(10 * time.Second):
		t.Fatal("the watchdog started no timer")
		return fakeTimer{}
	}
}

func waitFor(t *testing.T, ch chan string, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-ch:
			if m == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q", want)
		}
	}
}

func drain(ch chan string) int {
	n := 0
	for {
		select {
		case <-ch:
			n++
		default:
			return n
		}
	}
}

func TestNotifierWatchdog(t *testing.T) {
	t.Parallel()
	const interval = 15 * time.Second
	logs, log := newLogged()
	n, s := testNotifier(log, 1)
	clk := &fakeClock{timers: make(chan fakeTimer)}
	n.newTimer = clk.newTimer

	called := make(chan struct{}, 100) // a value per probe call
	wedged := make(chan struct{})      // a wedged probe blocks until it is closed
	var wedge atomic.Bool
	probe := func() {
		called <- struct{}{}
		if wedge.Load() {
			<-wedged
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Watchdog(ctx, interval, probe); close(done) }()

	// A probe that answers: one probe and one ping per round.
	for i := 0; i < 3; i++ {
		round := clk.next(t)
		if round.d != interval {
			t.Fatalf("round of %v, want %v", round.d, interval)
		}
		waitFor(t, s.ch, "WATCHDOG=1")
		if c := drain(s.ch); c != 0 {
			t.Fatalf("%d more messages in one round", c)
		}
		if c := len(called); c != 1 {
			t.Fatalf("%d probes in one round", c)
		}
		<-called
		if i == 2 {
			wedge.Store(true) // from the next round on
		}
		round.fire()
	}

	// Wedged: rounds pass without pings, and the probe under way is not
	// started again. The watchdog starting the next round's timer means it
	// is done with the last one.
	clk.next(t).fire()
	select {
	case <-called:
	case <-time.After(10 * time.Second):
		t.Fatal("no probe in the fourth round")
	}
	clk.next(t).fire()
	clk.next(t)
	if c := drain(s.ch); c != 0 {
		t.Fatalf("%d pings while the probe was wedged", c)
	}
	if c := len(called); c != 0 {
		t.Fatalf("%d more probes while one was wedged", c)
	}
	if c := logs.count("watchdog probe did not answer"); c != 2 {
		t.Fatalf("2 missed rounds logged %d times:\n%s", c, logs.all())
	}

	// It answers again: so do the pings, within the round.
	wedge.Store(false)
	close(wedged)
	waitFor(t, s.ch, "WATCHDOG=1")
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watchdog did not return when its context ended")
	}
}

// TestWatchdogReturnsWhileWedged: a probe that never returns does not keep
// Watchdog from returning.
func TestWatchdogReturnsWhileWedged(t *testing.T) {
	t.Parallel()
	n, s := testNotifier(logr.Discard(), 1)
	clk := &fakeClock{timers: make(chan fakeTimer)}
	n.newTimer = clk.newTimer
	never := make(chan struct{})
	defer close(never)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Watchdog(ctx, time.Second, func() { <-never }); close(done) }()
	clk.next(t)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watchdog did not return when its context ended")
	}
	if s.all() != "" {
		t.Fatalf("sent %q with a wedged probe", s.all())
	}
}

func TestWatchdogWithoutInterval(t *testing.T) {
	t.Parallel()
	n, _ := testNotifier(logr.Discard(), 1)
	var probed atomic.Bool
	n.Watchdog(context.Background(), 0, func() { probed.Store(true) }) // returns at once
	if probed.Load() {
		t.Fatal("probed with no interval")
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		name      string
		usec, pid string
		want      time.Duration
	}{
		{"none", "", "", 0},
		{"half", "200000", "", 100 * time.Millisecond},
		{"this process", "30000000", strconv.Itoa(os.Getpid()), 15 * time.Second},
		{"another process", "30000000", "1", 0},
		{"unreadable", "soon", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			if got := WatchdogInterval(); got != tc.want {
				t.Errorf("WatchdogInterval() = %v, want %v", got, tc.want)
			}
		})
	}
}
