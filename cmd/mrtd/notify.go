package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/go-logr/logr"

	"github.com/mrt-project/mrt/pool"
)

// notifier reports the pool to systemd through NOTIFY_SOCKET: READY=1 once
// every worker has had its first attempt (it runs, or its start failed: a
// worker mrtd cannot start must not leave systemd waiting for
// TimeoutStartSec), STATUS= when the counts change, WATCHDOG=1 while the
// supervisor answers, STOPPING=1 on shutdown. Without NOTIFY_SOCKET it does
// nothing. runc never sees the socket: go-runc removes it from runc's
// environment, and containers get only the environment mrtd builds.
type notifier struct {
	log     logr.Logger
	desired int
	send    func(state string) // sd_notify; replaced in tests

	mu       sync.Mutex
	running  map[string]bool
	tried    map[string]bool // workers past their first attempt
	restarts int
	ready    bool
	status   string
}

func newNotifier(log logr.Logger, desired int) *notifier {
	return &notifier{
		log:     log,
		desired: desired,
		running: map[string]bool{},
		tried:   map[string]bool{},
		send: func(state string) {
			if _, err := sddaemon.SdNotify(false, state); err != nil {
				log.Error(err, "notifying systemd", "state", state)
			}
		},
	}
}

// enabled reports whether mrtd runs under systemd's notify protocol.
func notifyEnabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// event is the supervisor hook. It must not block: sending a datagram on a
// unix socket does not.
func (n *notifier) event(ev pool.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ev.State == pool.Running {
		n.running[ev.ContainerID] = true
	} else {
		delete(n.running, ev.ContainerID)
	}
	if ev.State != pool.Starting {
		n.tried[ev.ContainerID] = true
	}
	if ev.State == pool.Starting && ev.Restarts > 0 {
		n.restarts++
	}
	status := n.statusLine()
	msg := ""
	if !n.ready && len(n.tried) >= n.desired {
		n.ready = true
		msg = "READY=1\n"
	}
	if status != n.status {
		n.status = status
		msg += "STATUS=" + status + "\n"
	}
	if msg != "" {
		n.send(msg)
	}
}

// statusLine is STATUS=. The caller holds n.mu.
func (n *notifier) statusLine() string {
	return fmt.Sprintf("%d/%d workers running, %d restarts", len(n.running), n.desired, n.restarts)
}

// setDesired changes the worker count the status reports.
func (n *notifier) setDesired(workers int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.desired = workers
	n.status = n.statusLine()
	n.send("STATUS=" + n.status + "\n")
}

// reloading says a reload began, with the monotonic time systemd needs to
// tell this reload from an earlier one.
func (n *notifier) reloading() {
	n.send("RELOADING=1\n" + sddaemon.SdNotifyMonotonicUsec() + "\n")
}

// reloaded says the reload is over.
func (n *notifier) reloaded() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.send("READY=1\nSTATUS=" + n.status + "\n")
}

// stopMargin is what a stop takes beyond the workers' stop timeout: the
// SIGKILL, the reaping and the deletes.
const stopMargin = 15 * time.Second

// stopping says the daemon is shutting down, and that it needs the workers'
// stop timeout and a margin: systemd would otherwise kill it at the unit's
// TimeoutStopSec, in the middle of a longer --stop-timeout.
func (n *notifier) stopping(stopTimeout time.Duration) {
	n.send(fmt.Sprintf("STOPPING=1\nEXTEND_TIMEOUT_USEC=%d\nSTATUS=stopping workers\n", (stopTimeout + stopMargin).Microseconds()))
}

// watchdog pings systemd every interval while probe returns within the
// interval: a wedged supervisor stops the pings, and systemd restarts mrtd.
// It returns when ctx is done.
func (n *notifier) watchdog(ctx context.Context, interval time.Duration, probe func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	answered := make(chan struct{}, 1)
	pending := false
	for {
		if !pending {
			pending = true
			go func() { probe(); answered <- struct{}{} }()
		}
		deadline := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			deadline.Stop()
			return
		case <-answered:
			pending = false
			deadline.Stop()
			n.send("WATCHDOG=1")
		case <-deadline.C:
			n.log.Error(nil, "supervisor did not answer the watchdog probe; not pinging systemd", "interval", interval.String())
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchdogInterval is half of WATCHDOG_USEC, or 0 when systemd set no
// watchdog for this process.
func watchdogInterval() time.Duration {
	d, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}
