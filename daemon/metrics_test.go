package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mrt-project/mrt/pool"
)

// TestMetricsText checks the pool's metrics line by line against
// testdata/metrics.txt, whose lines are those client_golang wrote for the
// same events (names, help, labels and buckets are what dashboards see),
// plus mrtd_worker_standby_starts_total. The process and Go figures vary,
// and are checked by name.
func TestMetricsText(t *testing.T) {
	t.Parallel()
	m := newMetrics(3, "1.5.3", "sha256:ab\"c\\d\ne")
	t0 := time.Unix(1000, 0)
	for _, ev := range []pool.Event{
		{Status: pool.Status{Name: "w-0", State: pool.Starting, Since: t0}},
		{Status: pool.Status{Name: "w-0", State: pool.Running, Since: t0.Add(30 * time.Millisecond)}},
		{Status: pool.Status{Name: "w-1", State: pool.Starting, Since: t0}},
		{Status: pool.Status{Name: "w-1", State: pool.Running, Since: t0.Add(3 * time.Second)}},
		{Status: pool.Status{Name: "w-1", State: pool.BackingOff}, Delay: 1500 * time.Millisecond},
		// The restart runs in the worker's other slot: labels are the
		// worker's Name, not its ContainerID.
		{Status: pool.Status{Name: "w-1", ContainerID: "w-1.1", State: pool.Starting, Since: t0, Restarts: 1, Reason: pool.ReasonSignaled}},
		{Status: pool.Status{Name: "w-1", ContainerID: "w-1.1", State: pool.Running, Since: t0.Add(20 * time.Second), FromStandby: true}},
		{Status: pool.Status{Name: "w-10", State: pool.Starting, Since: t0, Restarts: 2, Reason: pool.ReasonOOM}},
		{Status: pool.Status{Name: "w-2", State: pool.BackingOff}, Delay: 250 * time.Millisecond},
		{Status: pool.Status{Name: "w-3", State: pool.BackingOff}, Delay: time.Second},
		{Status: pool.Status{Name: "w-3", State: pool.Stopped}},
	} {
		m.event(ev)
	}
	m.health(pool.HealthEvent{Name: "w-0", HealthStatus: pool.HealthStatus{Health: pool.HealthHealthy}})
	m.health(pool.HealthEvent{Name: "w-0", Failed: true, HealthStatus: pool.HealthStatus{Health: pool.HealthHealthy}})
	m.setDesired(4)

	var own []string
	runtime := map[string]bool{}
	for line := range strings.Lines(scrapeRegistry(t, m)) {
		name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			runtime[strings.FieldsFunc(name, func(r rune) bool { return r == ' ' || r == '{' })[0]] = true
			continue
		}
		own = append(own, line)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(own, ""); got != string(want) {
		t.Errorf("metrics:\n%s\nwant (testdata/metrics.txt):\n%s", got, want)
	}
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
		"process_start_time_seconds", "process_open_fds", "process_max_fds",
		"go_goroutines", "go_threads", "go_info", "go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes"} {
		if !runtime[name] {
			t.Errorf("metrics lack %s", name)
		}
	}
}
