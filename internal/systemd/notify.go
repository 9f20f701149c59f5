package systemd

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/go-logr/logr"
)

// WorkerState is where a worker is, as far as systemd needs to know.
type WorkerState int

const (
	// WorkerStarting is a worker's first start.
	WorkerStarting WorkerState = iota
	// WorkerRestarting is a start after an exit: it counts a restart.
	WorkerRestarting
	// WorkerRunning is a worker whose container runs.
	WorkerRunning
	// WorkerDown is a worker past its first attempt that does not run: it
	// exited, failed to start, backs off, is stopping or has stopped.
	WorkerDown
)

func (s WorkerState) String() string {
	switch s {
	case WorkerStarting:
		return "starting"
	case WorkerRestarting:
		return "restarting"
	case WorkerRunning:
		return "running"
	case WorkerDown:
		return "down"
	}
	return fmt.Sprintf("WorkerState(%d)", int(s))
}

// Notifier reports a pool to systemd through NOTIFY_SOCKET: READY=1 once
// every desired worker has had its first attempt (it runs, or its start
// failed: a worker mrtd cannot start must not leave systemd waiting for
// TimeoutStartSec), or, with a health check (WaitHealthy), once every
// desired worker is healthy; STATUS= when the counts change, WATCHDOG=1 while a probe
// answers, STOPPING=1 on shutdown. Without NOTIFY_SOCKET its sends do
// nothing. A send that fails is logged once; later failures are counted, and
// the first send that works again logs how many were lost.
//
// runc never sees the socket: go-runc removes it from runc's environment,
// and containers get only the environment mrtd builds.
//
// Its methods are safe for concurrent use and never block on anything but
// the datagram they send.
type Notifier struct {
	log logr.Logger
	// send is daemon.SdNotify; tests replace it.
	send func(state string) (sent bool, err error)
	// newTimer is time.NewTimer's channel and Stop; tests replace it.
	newTimer func(d time.Duration) (<-chan time.Time, func() bool)

	sendMu   sync.Mutex // held across a send, so failures are counted in order
	failures int        // sends failed since the last one that worked

	mu       sync.Mutex
	desired  int
	running  map[string]bool
	tried    map[string]bool // workers past their first attempt
	restarts int
	ready    bool
	status   string // the last STATUS= sent
	// waitHealthy makes READY=1 wait for healthy workers (WaitHealthy);
	// healthy are the running workers whose health check passed last.
	waitHealthy bool
	healthy     map[string]bool
}

// NewNotifier returns a Notifier for a pool of desired workers that sends
// through sd_notify (go-systemd's daemon.SdNotify) and logs to log.
func NewNotifier(log logr.Logger, desired int) *Notifier {
	return &Notifier{
		log:      log,
		send:     func(state string) (bool, error) { return daemon.SdNotify(false, state) },
		newTimer: realTimer,
		desired:  desired,
		running:  map[string]bool{},
		tried:    map[string]bool{},
		healthy:  map[string]bool{},
	}
}

// WaitHealthy is for a pool with a health check: READY=1 then waits until
// every desired worker is healthy, as Quadlet's Notify=healthy, and the
// STATUS= line counts the healthy workers. Call it before the first
// Worker.
func (n *Notifier) WaitHealthy() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.waitHealthy = true
}

func realTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// NotifyEnabled reports whether mrtd runs under systemd's notify protocol:
// NOTIFY_SOCKET is set.
func NotifyEnabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// notify sends state, and logs the first failure of a run of failures and
// the send that ends it.
func (n *Notifier) notify(state string) {
	n.sendMu.Lock()
	defer n.sendMu.Unlock()
	sent, err := n.send(state)
	switch {
	case err != nil:
		n.failures++
		if n.failures == 1 {
			n.log.Error(err, "notifying systemd failed; further failures are not logged until a notification gets through", "state", state)
		}
	case sent && n.failures > 0:
		n.log.Info("notifying systemd works again", "failures", n.failures)
		n.failures = 0
	}
}

// Worker records that the worker name entered state s. It sends READY=1 once
// every desired worker is past its first attempt (WorkerRestarting,
// WorkerRunning or WorkerDown), and STATUS= whenever the line
// "%d/%d workers running, %d restarts" changes. It must not block the pool:
// it sends one datagram at most.
func (n *Notifier) Worker(name string, s WorkerState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s == WorkerRunning {
		n.running[name] = true
	} else {
		delete(n.running, name)
		delete(n.healthy, name)
	}
	if s != WorkerStarting {
		n.tried[name] = true
	}
	if s == WorkerRestarting {
		n.restarts++
	}
	n.changed()
}

// Health records that the running worker name's health check passed
// (healthy) or not. With WaitHealthy, it sends READY=1 once every desired
// worker is healthy, and STATUS= when the line changes. A worker that
// stops is no longer healthy: Worker forgets it.
func (n *Notifier) Health(name string, healthy bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if healthy && n.running[name] {
		n.healthy[name] = true
	} else {
		delete(n.healthy, name)
	}
	n.changed()
}

// changed sends READY=1 when the pool became ready, and STATUS= when the
// line changed. The caller holds n.mu.
func (n *Notifier) changed() {
	status := n.statusLine()
	msg := ""
	ready := len(n.tried) >= n.desired
	if n.waitHealthy {
		ready = len(n.healthy) >= n.desired
	}
	if !n.ready && ready {
		n.ready = true
		msg = daemon.SdNotifyReady + "\n"
	}
	if status != n.status {
		n.status = status
		msg += "STATUS=" + status + "\n"
	}
	if msg != "" {
		n.notify(msg)
	}
}

// statusLine is STATUS=. The caller holds n.mu.
func (n *Notifier) statusLine() string {
	if n.waitHealthy {
		return fmt.Sprintf("%d/%d workers running, %d healthy, %d restarts", len(n.running), n.desired, len(n.healthy), n.restarts)
	}
	return fmt.Sprintf("%d/%d workers running, %d restarts", len(n.running), n.desired, n.restarts)
}

// SetDesired changes the worker count the status reports, and sends the
// status.
func (n *Notifier) SetDesired(workers int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.desired = workers
	n.status = n.statusLine()
	n.notify("STATUS=" + n.status + "\n")
}

// Reloading says a reload began: RELOADING=1 with the MONOTONIC_USEC systemd
// needs to tell this reload from an earlier one.
func (n *Notifier) Reloading() {
	// SdNotifyMonotonicUsec ends with its own newline, or is empty
	// without a monotonic clock.
	n.notify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// Reloaded says the reload is over: READY=1 with the status.
func (n *Notifier) Reloaded() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.status = n.statusLine()
	n.notify(daemon.SdNotifyReady + "\nSTATUS=" + n.status + "\n")
}

// StopMargin is what a stop takes beyond the workers' stop timeout: the
// SIGKILL, the reaping and the deletes.
const StopMargin = 15 * time.Second

// Stopping says the daemon is shutting down, and asks for the workers' stop
// timeout and StopMargin (EXTEND_TIMEOUT_USEC): systemd would otherwise kill
// it at the unit's TimeoutStopSec, in the middle of a longer stop timeout.
func (n *Notifier) Stopping(stopTimeout time.Duration) {
	n.notify(fmt.Sprintf("%s\nEXTEND_TIMEOUT_USEC=%d\nSTATUS=stopping workers\n",
		daemon.SdNotifyStopping, (stopTimeout + StopMargin).Microseconds()))
}
