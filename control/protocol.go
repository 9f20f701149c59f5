package control

import (
	"path/filepath"
	"time"
)

// Request is one command to the daemon.
type Request struct {
	// Command is "status", "scale" or "restart".
	Command string `json:"command"`
	// Workers is the worker count scale asks for.
	Workers int `json:"workers,omitempty"`
	// Worker is the index of the worker restart replaces; nil is refused.
	Worker *int `json:"worker,omitempty"`
}

// Response is the daemon's answer: the pool's status after the command.
// Error is set when the command failed or was refused; a refused peer gets
// Error alone.
type Response struct {
	Error    string         `json:"error,omitempty"`
	Instance string         `json:"instance"`
	Desired  int            `json:"desired"`
	Workers  []WorkerStatus `json:"workers"`
	// Labels are the Labels of the image the workers run; absent without
	// an image or labels, so that older clients and daemons still talk.
	Labels map[string]string `json:"labels,omitempty"`
}

// WorkerStatus is one worker's state as the protocol carries it.
type WorkerStatus struct {
	Worker      int    `json:"worker"`
	ContainerID string `json:"containerId"`
	// State is the worker's state: "starting", "running", "backoff",
	// "stopping" or "stopped".
	State string `json:"state"`
	// Pid is the container's init, when it runs.
	Pid int `json:"pid,omitempty"`
	// Since is when the worker entered State.
	Since    time.Time `json:"since"`
	Restarts int       `json:"restarts"`
	// LastExit says how the worker's last container ended ("exit status
	// 0" for a clean exit); empty when none has ended yet.
	LastExit string `json:"lastExit,omitempty"`
	// Reason classifies LastExit as the restart metrics count it:
	// "exited_0", "exited_nonzero", "signaled", "oom", "unhealthy",
	// "start_failed" or "error"; empty when none has ended yet.
	Reason string `json:"reason,omitempty"`
	// Health is the worker's health check; absent without one.
	Health *WorkerHealth `json:"health,omitempty"`
	// Standby is true when the worker's next container is created and
	// waiting (--standby).
	Standby bool `json:"standby,omitempty"`
}

// WorkerHealth is a worker's health check, with Podman's names.
type WorkerHealth struct {
	// Status is "starting" (no check passed yet since the container
	// started), "healthy" or "unhealthy".
	Status string `json:"status"`
	// FailingStreak counts the failed checks in a row that count (not
	// those of the start period).
	FailingStreak int `json:"failingStreak"`
	// LastCheck is when the last check ended; absent before the first.
	LastCheck time.Time `json:"lastCheck,omitzero"`
	// LastExitCode is the last check's exit status: -1 when it timed out
	// or could not run.
	LastExitCode int `json:"lastExitCode"`
	// LastOutput is the beginning of what it printed (or why it could not
	// run), a few hundred bytes at most.
	LastOutput string `json:"lastOutput"`
}

// SocketPath is the control socket of an instance: <runtimeDir>/<instance>.sock.
func SocketPath(runtimeDir, instance string) string {
	return filepath.Join(runtimeDir, instance+".sock")
}
