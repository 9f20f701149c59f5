package supervisor

import "time"

// Backoff computes restart delays for one service. The first failure in a
// row restarts at once; the backoff starts at the second: BackoffMin, then
// doubled for each further failure in a row, capped at BackoffMax, then
// jittered. A run that lasted HealthyAfter or longer (the healthy period)
// starts the count over, so a service that was healthy that long restarts
// with no delay after its next failure.
type Backoff struct {
	Min, Max     time.Duration
	Jitter       float64 // fraction, 0.2 for ±20%
	HealthyAfter time.Duration

	failures int
}

// Failures is the number of failures in a row counted so far.
func (b *Backoff) Failures() int { return b.failures }

// Next records a run that ended after ranFor (failed or not) and returns how
// long to wait before the next start. rnd returns a number in [0, 1).
func (b *Backoff) Next(ranFor time.Duration, failed bool, rnd func() float64) time.Duration {
	if ranFor >= b.HealthyAfter {
		b.failures = 0
	}
	if !failed {
		// A clean exit under restart=always: start again at the minimum,
		// without counting it as a failure.
		return b.jitter(b.Min, rnd)
	}
	b.failures++
	if b.failures == 1 {
		return 0
	}
	d := b.Min
	for i := 2; i < b.failures && d < b.Max; i++ {
		d *= 2
	}
	return b.jitter(min(d, b.Max), rnd)
}

func (b *Backoff) jitter(d time.Duration, rnd func() float64) time.Duration {
	if b.Jitter <= 0 || rnd == nil {
		return d
	}
	f := 1 + b.Jitter*(2*rnd()-1)
	return time.Duration(float64(d) * f)
}
