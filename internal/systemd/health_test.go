package systemd

import (
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// TestNotifierWaitsForHealthy: with a health check, READY=1 comes once
// every worker is healthy, not at their first attempt, and the status
// counts the healthy ones; a worker that stops is no longer healthy.
func TestNotifierWaitsForHealthy(t *testing.T) {
	t.Parallel()
	n, s := testNotifier(logr.Discard(), 2)
	n.WaitHealthy()
	n.Worker("w-0", WorkerStarting)
	n.Worker("w-1", WorkerStarting)
	n.Worker("w-0", WorkerRunning)
	n.Worker("w-1", WorkerRunning)
	n.Health("w-0", true)
	n.Health("w-1", false) // starting: its check failed in the start period
	if strings.Contains(s.all(), "READY=1") {
		t.Fatalf("READY before every worker is healthy: %q", s.all())
	}
	n.Health("w-1", true)
	n.Health("w-1", true) // no change: nothing sent
	n.Worker("w-1", WorkerDown)
	n.Worker("w-1", WorkerRestarting)
	n.Worker("w-1", WorkerRunning)
	n.Health("w-2", true) // not running: not counted
	want := []string{
		"STATUS=0/2 workers running, 0 healthy, 0 restarts\n",
		"STATUS=1/2 workers running, 0 healthy, 0 restarts\n",
		"STATUS=2/2 workers running, 0 healthy, 0 restarts\n",
		"STATUS=2/2 workers running, 1 healthy, 0 restarts\n",
		"READY=1\nSTATUS=2/2 workers running, 2 healthy, 0 restarts\n",
		"STATUS=1/2 workers running, 1 healthy, 0 restarts\n",
		"STATUS=1/2 workers running, 1 healthy, 1 restarts\n",
		"STATUS=2/2 workers running, 1 healthy, 1 restarts\n",
	}
	if got := s.all(); got != strings.Join(want, "|") {
		t.Errorf("sent\n%q\nwant\n%q", got, strings.Join(want, "|"))
	}
}

// TestNotifierNoHealthCheckStatus: without WaitHealthy, Health changes
// nothing of what is sent.
func TestNotifierNoHealthCheckStatus(t *testing.T) {
	t.Parallel()
	n, s := testNotifier(logr.Discard(), 1)
	n.Worker("w-0", WorkerStarting)
	n.Worker("w-0", WorkerRunning)
	before := s.all()
	n.Health("w-0", true)
	if got := s.all(); got != before || !strings.Contains(got, "READY=1\nSTATUS=1/1 workers running, 0 restarts\n") {
		t.Fatalf("sent %q", got)
	}
}
