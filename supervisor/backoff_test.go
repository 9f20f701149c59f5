package supervisor

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const (
		minD    = 100 * time.Millisecond
		maxD    = time.Second
		healthy = 10 * time.Second
	)
	type run struct {
		ranFor time.Duration
		failed bool
		want   time.Duration // without jitter
	}
	for _, tc := range []struct {
		name string
		runs []run
	}{
		{"the first failure restarts at once, then grows and caps", []run{
			{0, true, 0},
			{0, true, 100 * time.Millisecond},
			{0, true, 200 * time.Millisecond},
			{0, true, 400 * time.Millisecond},
			{0, true, 800 * time.Millisecond},
			{0, true, time.Second},
			{0, true, time.Second},
		}},
		{"a healthy run starts the count over: at once again", []run{
			{0, true, 0},
			{0, true, 100 * time.Millisecond},
			{0, true, 200 * time.Millisecond},
			{healthy, true, 0},
			{time.Second, true, 100 * time.Millisecond},
		}},
		{"a short run keeps the count", []run{
			{0, true, 0},
			{healthy - 1, true, 100 * time.Millisecond},
		}},
		{"clean exits wait the minimum and are not failures", []run{
			{0, false, 100 * time.Millisecond},
			{0, false, 100 * time.Millisecond},
			{0, true, 0},
			{0, true, 100 * time.Millisecond},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &Backoff{Min: minD, Max: maxD, HealthyAfter: healthy}
			for i, r := range tc.runs {
				if got := b.Next(r.ranFor, r.failed, nil); got != r.want {
					t.Fatalf("run %d: delay %v, want %v", i, got, r.want)
				}
			}
		})
	}
}

func TestBackoffJitter(t *testing.T) {
	for _, tc := range []struct {
		name string
		rnd  float64
		want time.Duration
	}{
		{"lowest", 0, 800 * time.Millisecond},
		{"middle", 0.5, time.Second},
		{"highest", 0.999999, 1200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &Backoff{Min: time.Second, Max: time.Minute, Jitter: 0.2, HealthyAfter: time.Minute}
			rnd := func() float64 { return tc.rnd }
			if d := b.Next(0, true, rnd); d != 0 {
				t.Fatalf("first failure: delay %v, want none (no jitter on zero)", d)
			}
			got := b.Next(0, true, rnd)
			if d := got - tc.want; d < -time.Microsecond || d > time.Microsecond {
				t.Fatalf("delay %v, want %v", got, tc.want)
			}
		})
	}
}
