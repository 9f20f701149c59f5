package config

import (
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Health is the workers' health check, with Podman's names: Cmd runs in
// every worker (runc exec) every Interval, after StartPeriod; a run that
// fails or outlasts Timeout is a failure, and Retries failures in a row
// restart the worker with reason unhealthy.
type Health struct {
	// Cmd is --health-cmd: a command line run by /bin/sh -c, or, as a
	// JSON array, the argv itself; "" is no health check (the image's
	// HEALTHCHECK applies when it has one), and "none" turns the image's
	// off.
	Cmd         string
	Interval    time.Duration
	Timeout     time.Duration
	Retries     int
	StartPeriod time.Duration
}

// HealthNone is the --health-cmd that turns off the image's HEALTHCHECK,
// as Podman's.
const HealthNone = "none"

// DefaultHealth returns Podman's defaults: 30s, 30s, 3 retries, no start
// period.
func DefaultHealth() Health {
	return Health{Interval: 30 * time.Second, Timeout: 30 * time.Second, Retries: 3}
}

// Validate checks h and returns a *UsageError naming the first problem and
// its fix.
func (h *Health) Validate() error {
	if _, err := ParseHealthCmd(h.Cmd); err != nil {
		return err
	}
	switch {
	case h.Interval <= 0:
		return usagef("--health-interval %v: use a positive duration such as 30s", h.Interval)
	case h.Timeout <= 0:
		return usagef("--health-timeout %v: use a positive duration such as 30s", h.Timeout)
	case h.StartPeriod < 0:
		return usagef("--health-start-period %v is negative: use 0s (none) or a duration such as 1m", h.StartPeriod)
	case h.Retries < 1:
		return usagef("--health-retries %d: use 1 or more failed checks in a row", h.Retries)
	}
	return nil
}

// ParseHealthCmd returns the argv of the health command cmd: nil for ""
// (no command given) and for "none" (no health check). A JSON array is the
// argv itself, or, as Docker's HEALTHCHECK, ["CMD", ARGV...],
// ["CMD-SHELL", COMMAND] or ["NONE"]; anything else is a command line for
// /bin/sh -c, as Podman's --health-cmd.
func ParseHealthCmd(cmd string) ([]string, error) {
	s := strings.TrimSpace(cmd)
	if s == "" || strings.EqualFold(s, HealthNone) {
		return nil, nil
	}
	if !strings.HasPrefix(s, "[") {
		return []string{"/bin/sh", "-c", cmd}, nil
	}
	var argv []string
	if err := json.Unmarshal([]byte(s), &argv); err != nil {
		return nil, usagef(`--health-cmd %s: not a JSON array of strings (%v): write it as ["/bin/check", "--quick"], or without brackets for /bin/sh -c`, cmd, jsonReason(err))
	}
	if len(argv) > 0 {
		switch strings.ToUpper(argv[0]) {
		case "NONE":
			if len(argv) > 1 {
				return nil, usagef(`--health-cmd %s: ["NONE"] takes nothing after it`, cmd)
			}
			return nil, nil
		case "CMD":
			argv = argv[1:]
		case "CMD-SHELL":
			if len(argv) != 2 {
				return nil, usagef(`--health-cmd %s: ["CMD-SHELL", COMMAND] takes one command line`, cmd)
			}
			return []string{"/bin/sh", "-c", argv[1]}, nil
		}
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, usagef(`--health-cmd %s: no command in the array: give one, as in ["/bin/check", "--quick"]`, cmd)
	}
	return argv, nil
}

// jsonReason is a JSON error in a few words.
func jsonReason(err error) string {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return "found a " + te.Value
	}
	return err.Error()
}
