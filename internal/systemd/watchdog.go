package systemd

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Watchdog pings systemd (WATCHDOG=1) once per interval while probe returns
// within the interval: a wedged supervisor stops the pings, and systemd
// restarts mrtd. Each interval runs probe, unless the last call has not
// returned yet; a round whose probe does not answer in time is logged and
// sends nothing. Watchdog returns when ctx is done, or at once when interval
// is not positive. It does not wait for a probe that never returns: that
// goroutine ends when probe does.
func (n *Notifier) Watchdog(ctx context.Context, interval time.Duration, probe func()) {
	if interval <= 0 {
		return
	}
	answered := make(chan struct{}, 1)
	pending := false
	for {
		// One timer per round: the probe's deadline, then the wait
		// for the next round.
		round, stop := n.newTimer(interval)
		if !pending {
			pending = true
			go func() { probe(); answered <- struct{}{} }()
		}
		select {
		case <-ctx.Done():
			stop()
			return
		case <-answered:
			pending = false
			n.notify(daemon.SdNotifyWatchdog)
		case <-round:
			n.log.Error(nil, "watchdog probe did not answer; not pinging systemd", "interval", interval.String())
			continue
		}
		select {
		case <-ctx.Done():
			stop()
			return
		case <-round:
		}
	}
}

// WatchdogInterval is half of WATCHDOG_USEC, or 0 when systemd set no
// watchdog for this process (or set one mrtd cannot read).
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}
