package pool

import (
	"errors"
	"time"

	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/supervisor"
)

// State is where a worker is in its life.
type State string

// The states of a worker.
const (
	Starting   State = State(supervisor.Starting)
	Running    State = State(supervisor.Running)
	BackingOff State = State(supervisor.BackingOff)
	Stopping   State = State(supervisor.Stopping)
	Stopped    State = State(supervisor.Stopped)
)

// Reason says how a worker's last run ended, as the metrics count it.
type Reason string

// The reasons a run ends.
const (
	ReasonNone          Reason = ""               // it has not ended yet
	ReasonExited0       Reason = "exited_0"       // its command exited 0
	ReasonExitedNonzero Reason = "exited_nonzero" // its command exited non-zero
	ReasonSignaled      Reason = "signaled"       // its command was killed by a signal
	ReasonStartFailed   Reason = "start_failed"   // runc could not start it
	ReasonUnhealthy     Reason = "unhealthy"      // its health check failed Retries times in a row
	ReasonOOM           Reason = "oom"            // the kernel's OOM killer killed it (see ExitError.OOM)
	ReasonError         Reason = "error"          // anything else
)

// Status is a snapshot of one worker.
type Status struct {
	Worker int
	// Name is the worker's name, <instance>-<index>: its containers'
	// hostname, the same for all of them. ContainerID is the runc id of
	// the container it runs or ran last: Name, or Name+".1" for its
	// second slot (see slotID).
	Name        string
	ContainerID string
	State       State
	Pid         int
	// Since is when the worker entered State.
	Since time.Time
	// BackoffUntil is when the next start is due, in state BackingOff.
	BackoffUntil time.Time
	// Restarts counts the starts after the first.
	Restarts int
	// LastExit is how the last run ended: nil for a clean exit or before
	// the first exit; Reason classifies it.
	LastExit error
	Reason   Reason
	// Health is the worker's health check, in Status; zero without one.
	Health HealthStatus
	// Standby is set when the worker's next container is created and
	// waiting (Config.Standby); FromStandby, in state Running, when the
	// current one was started from a standby.
	Standby, FromStandby bool
}

// Event reports a change of a worker's state.
type Event struct {
	Status
	// Delay is the backoff, in state BackingOff.
	Delay time.Duration
	// StartReason, on a start failure (Reason ReasonStartFailed), is runc's
	// reason, in one line.
	StartReason string
}

// reason classifies how a run ended.
func reason(exited bool, err error) Reason {
	var exit *ExitError
	var start *container.StartError
	var sick *UnhealthyError
	switch {
	case !exited:
		return ReasonNone
	case err == nil:
		return ReasonExited0
	case errors.As(err, &start):
		return ReasonStartFailed
	case errors.As(err, &sick):
		return ReasonUnhealthy
	case errors.As(err, &exit) && exit.OOM:
		return ReasonOOM
	case errors.As(err, &exit) && exit.Exit.Status.Signaled():
		return ReasonSignaled
	case errors.As(err, &exit):
		return ReasonExitedNonzero
	default:
		return ReasonError
	}
}

// RestartPolicy says when a worker that ended is started again.
type RestartPolicy string

// The restart policies, as systemd's Restart= names them.
const (
	RestartAlways    RestartPolicy = "always"     // however it ended
	RestartOnFailure RestartPolicy = "on-failure" // a non-zero exit, a signal, a failed start
)
