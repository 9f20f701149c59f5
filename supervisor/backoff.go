package supervisor

import "time"

// Backoff computes restart delays for one service: BackoffMin doubled for
// each failure in a row, capped at BackoffMax, then jittered. A run that
// lasted HealthyAfter or longer resets the failure count.
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
	d := b.Min
	for i := 0; i < b.failures && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	b.failures++
	return b.jitter(d, rnd)
}

func (b *Backoff) jitter(d time.Duration, rnd func() float64) time.Duration {
	if b.Jitter <= 0 || rnd == nil {
		return d
	}
	f := 1 + b.Jitter*(2*rnd()-1)
	return time.Duration(float64(d) * f)
}
