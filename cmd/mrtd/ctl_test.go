package main

import (
	"strings"
	"testing"
	"time"

	"github.com/mrt-project/mrt/control"
)

func TestPrintStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		resp       control.Response
		want, none []string
	}{
		{"no labels", control.Response{Instance: "w", Desired: 1, Workers: []control.WorkerStatus{{ContainerID: "w-0", State: "running", Pid: 42, Since: time.Now()}}},
			[]string{"instance w: 1 workers desired", "w-0", "running", "42"}, []string{"label "}},
		{"labels, sorted", control.Response{Instance: "w", Desired: 0, Labels: map[string]string{"b": "2", "a": "1"}},
			[]string{"label a=1\nlabel b=2\n"}, nil},
		{"no health check, no standby: no such columns", control.Response{Instance: "w", Desired: 1, Workers: []control.WorkerStatus{{ContainerID: "w-0", State: "running"}}},
			nil, []string{"HEALTH", "LAST CHECK", "STANDBY"}},
		{"standby", control.Response{Instance: "w", Desired: 2, Workers: []control.WorkerStatus{
			{ContainerID: "w-0.1", State: "running", Pid: 42, Since: time.Now(), Standby: true},
			{Worker: 1, ContainerID: "w-1", State: "starting"},
		}},
			[]string{"RESTARTS  LAST EXIT  STANDBY\n", "w-0.1      running   42   0s      0         -          ready\n",
				"w-1        starting  -    -       0         -          -\n"}, nil},
		{"health", control.Response{Instance: "w", Desired: 2, Workers: []control.WorkerStatus{
			{ContainerID: "w-0", State: "running", Pid: 42, Since: time.Now(), Health: &control.WorkerHealth{Status: "healthy", LastCheck: time.Now(), LastOutput: "ok\n"}},
			{Worker: 1, ContainerID: "w-1", State: "backoff", Restarts: 1, LastExit: "unhealthy: 3 health checks in a row failed", Reason: "unhealthy",
				Health: &control.WorkerHealth{Status: "unhealthy", FailingStreak: 3, LastCheck: time.Now(), LastExitCode: 1, LastOutput: "connection\nrefused"}},
		}},
			[]string{"HEALTH", "LAST CHECK", "healthy", "0s ago: exit 0: ok", "unhealthy (3 failed)", "0s ago: exit 1: connection refused",
				"unhealthy: 3 health checks in a row failed"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			printStatus(&b, &tc.resp)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("status %q lacks %q", b.String(), w)
				}
			}
			for _, n := range tc.none {
				if strings.Contains(b.String(), n) {
					t.Errorf("status %q has %q", b.String(), n)
				}
			}
		})
	}
}

func TestHealthColumns(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		name          string
		h             *control.WorkerHealth
		health, check string
	}{
		{"none", nil, "-", "-"},
		{"no check yet", &control.WorkerHealth{Status: "starting"}, "starting", "-"},
		{"timed out", &control.WorkerHealth{Status: "starting", FailingStreak: 1, LastCheck: now.Add(-5 * time.Second), LastExitCode: -1, LastOutput: "timed out after 30s: "},
			"starting (1 failed)", "5s ago: failed: timed out after 30s:"},
		{"long output", &control.WorkerHealth{Status: "healthy", LastCheck: now, LastOutput: strings.Repeat("é", 100)},
			"healthy", "0s ago: exit 0: " + strings.Repeat("é", maxCheckOutput-1) + "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			health, check := healthColumns(tc.h, now)
			if health != tc.health || check != tc.check {
				t.Errorf("healthColumns = %q, %q; want %q, %q", health, check, tc.health, tc.check)
			}
		})
	}
}
