package pool

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/reaper"
)

// HealthCheck is the workers' health check, with Podman's names. Cmd runs
// in each running worker (runc exec, as the worker's command runs)
// Interval after the container started and Interval after each check
// ended. A check fails when it exits non-zero, outlasts Timeout or cannot
// run. Failures during StartPeriod do not count (a success there makes the
// worker healthy); Retries failures in a row make it unhealthy, and the
// pool restarts it with reason unhealthy. There is no check while a worker
// starts, backs off or stops.
type HealthCheck struct {
	Cmd                            []string
	Interval, Timeout, StartPeriod time.Duration
	Retries                        int
}

// Health is a worker's health, as Podman names it.
type Health string

// The healths of a worker.
const (
	HealthNone      Health = ""          // no health check
	HealthStarting  Health = "starting"  // no check has passed yet since the start
	HealthHealthy   Health = "healthy"   // the last counted check passed
	HealthUnhealthy Health = "unhealthy" // Retries checks in a row failed
)

// HealthStatus is a worker's health and its last check. Its container
// started again, a worker is HealthStarting again; while it is not
// running, it keeps what its last run ended with.
type HealthStatus struct {
	Health Health
	// FailingStreak counts the failed checks in a row that count.
	FailingStreak int
	// LastCheck is when the last check ended; zero before the first.
	LastCheck time.Time
	// LastExitCode is the last check's exit status; -1 when it timed out
	// or could not run.
	LastExitCode int
	// LastOutput is the beginning of what the last check printed (or why
	// it could not run), at most MaxHealthOutput bytes of valid UTF-8.
	LastOutput string
}

// MaxHealthOutput is how much of a check's output is kept.
const MaxHealthOutput = container.MaxExecOutput

// HealthEvent reports one health check of a worker.
type HealthEvent struct {
	Worker int
	// Name and ContainerID are as Status's.
	Name        string
	ContainerID string
	Pid         int
	// Health is the worker's health after the check.
	HealthStatus
	// Failed is set for a failed check; Counted is false for a failure
	// during the start period.
	Failed, Counted bool
	Duration        time.Duration
}

// UnhealthyError is a worker the pool restarted because Retries health
// checks in a row failed.
type UnhealthyError struct {
	Failures int
	// Output is what the last check printed.
	Output string
	// Exit is how the container ended once stopped.
	Exit reaper.Exit
}

func (e *UnhealthyError) Error() string {
	return fmt.Sprintf("unhealthy: %d health checks in a row failed", e.Failures)
}

// healthState is a worker's health, which its check loop updates.
type healthState struct {
	mu sync.Mutex
	st HealthStatus
}

func (h *healthState) get() HealthStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st
}

// wait waits for the container to exit by itself, for ctx (a stop) or for
// its health check to fail Retries times in a row, and returns how it
// ended: sick is set when it was stopped as unhealthy, and oom when the
// kernel's OOM killer ended it by itself (a container mrtd stopped is
// never oom). The health check loop runs while wait does.
func (w *worker) wait(ctx context.Context, proc Process) (exit reaper.Exit, sick *UnhealthyError, oom bool) {
	hc := w.pool.cfg.Health
	w.health.mu.Lock()
	if hc != nil {
		w.health.st.Health, w.health.st.FailingStreak = HealthStarting, 0
	}
	w.health.mu.Unlock()
	var unhealthy chan *UnhealthyError
	checked := make(chan struct{})
	hctx, stopChecks := context.WithCancel(ctx)
	if hc != nil {
		unhealthy = make(chan *UnhealthyError, 1)
		go func() {
			defer close(checked)
			w.checkHealth(hctx, *hc, proc, unhealthy)
		}()
	} else {
		close(checked)
	}
	defer func() {
		stopChecks()
		<-checked
	}()
	select {
	case exit = <-proc.Exited():
		return exit, nil, killedByOOM(exit.Status, proc)
	case <-ctx.Done():
	case sick = <-unhealthy:
		select {
		case exit = <-proc.Exited():
			// It ended by itself meanwhile, which is what failed the
			// last check: its exit says why.
			return exit, nil, killedByOOM(exit.Status, proc)
		default:
		}
		w.log.Info("worker unhealthy, restarting it", "worker", w.index, "containerId", w.current(),
			"failingStreak", sick.Failures, "output", sick.Output)
	}
	// No check of a container being stopped.
	stopChecks()
	<-checked
	exit = w.stop(proc)
	if sick != nil {
		sick.Exit = exit
	}
	return exit, sick, false
}

// exitError is what Serve returns for a run that ended with exit.
func exitError(exit reaper.Exit, sick *UnhealthyError, oom bool) error {
	switch {
	case sick != nil:
		return sick
	case exit.Status.Exited() && exit.Status.ExitStatus() == 0:
		return nil
	}
	return &ExitError{Exit: exit, OOM: oom}
}

// checkHealth runs hc in the worker's container until ctx ends or the
// worker is unhealthy, which it says once on unhealthy.
func (w *worker) checkHealth(ctx context.Context, hc HealthCheck, proc Process, unhealthy chan<- *UnhealthyError) {
	p := w.pool
	started := time.Now()
	t := time.NewTimer(hc.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := p.rt.Exec(ctx, w.current(), hc.Cmd, hc.Timeout)
		if ctx.Err() != nil {
			return // stopped during the check: no result
		}
		failed := err != nil || res.TimedOut || res.ExitCode != 0
		counted := !failed || time.Since(started) >= hc.StartPeriod
		output := string(res.Output)
		code := res.ExitCode
		switch {
		case err != nil:
			output, code = err.Error(), -1
		case res.TimedOut:
			output, code = fmt.Sprintf("timed out after %v: %s", hc.Timeout, output), -1
		}
		w.health.mu.Lock()
		st := &w.health.st
		before := st.Health
		st.LastCheck, st.LastExitCode, st.LastOutput = time.Now(), code, cleanOutput(output)
		switch {
		case !failed:
			st.Health, st.FailingStreak = HealthHealthy, 0
		case counted:
			st.FailingStreak++
			if st.FailingStreak >= hc.Retries {
				st.Health = HealthUnhealthy
			}
		}
		now := *st
		w.health.mu.Unlock()

		kv := []any{"worker", w.index, "containerId", w.current(), "health", string(now.Health)}
		switch {
		case failed:
			w.log.Info("health check failed", append(kv, "exitCode", code, "output", now.LastOutput,
				"failingStreak", now.FailingStreak, "counted", counted)...)
		case before != HealthHealthy:
			w.log.Info("worker healthy", kv...)
		default:
			w.log.V(1).Info("health check passed", append(kv, "duration", res.Duration.String())...)
		}
		if p.cfg.HealthHook != nil {
			p.cfg.HealthHook(HealthEvent{Worker: w.index, Name: ContainerID(p.cfg.Instance, w.index), ContainerID: w.current(), Pid: proc.Pid(), HealthStatus: now,
				Failed: failed, Counted: counted, Duration: res.Duration})
		}
		if now.Health == HealthUnhealthy {
			unhealthy <- &UnhealthyError{Failures: now.FailingStreak, Output: now.LastOutput}
			return
		}
		t.Reset(hc.Interval)
	}
}

// cleanOutput is a check's output as status shows it: valid UTF-8, at most
// MaxHealthOutput bytes, without the trailing newline.
func cleanOutput(s string) string {
	if len(s) > MaxHealthOutput {
		s = s[:MaxHealthOutput]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	for len(s) > MaxHealthOutput {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return strings.TrimRight(s, "\n")
}

// killedByOOM reports whether the kernel's OOM killer ended the container:
// it died of SIGKILL, or exited 137 (an init such as --init's reports its
// command's SIGKILL so), by itself, and its cgroup counted an OOM kill.
func killedByOOM(st unix.WaitStatus, proc Process) bool {
	killed := st.Signaled() && st.Signal() == unix.SIGKILL ||
		st.Exited() && st.ExitStatus() == 128+int(unix.SIGKILL)
	return killed && proc.OOMKilled()
}
