package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"

	prom "github.com/mrt-project/mrt/internal/metrics"
	"github.com/mrt-project/mrt/pool"
)

// metrics are the pool's Prometheus metrics, fed by supervisor events.
type metrics struct {
	reg      *prom.Registry
	desired  *prom.Gauge
	running  *prom.Gauge
	restarts *prom.CounterVec
	standby  *prom.Counter
	latency  *prom.Histogram
	backoff  *prom.GaugeVec
	// The health check's: checks and failed checks, and the healthy.
	checks   *prom.CounterVec
	failures *prom.CounterVec
	healthyN *prom.Gauge

	mu       sync.Mutex
	up       map[string]bool
	starting map[string]time.Time
	healthy  map[string]bool
}

func newMetrics(desired int, runcVersion, rootfsDigest string) *metrics {
	reg := prom.NewRegistry()
	m := &metrics{
		reg:      reg,
		desired:  reg.NewGauge("mrtd_workers_desired", "Workers the pool keeps running."),
		running:  reg.NewGauge("mrtd_workers_running", "Workers whose container runs."),
		restarts: reg.NewCounterVec("mrtd_worker_restarts_total", "Restarts of a worker, by the reason its last run ended.", "worker", "reason"),
		standby:  reg.NewCounter("mrtd_worker_standby_starts_total", "Restarts served by a standby container (--standby)."),
		latency: reg.NewHistogram("mrtd_worker_start_seconds", "Time from a worker's start to its container running.",
			prom.ExponentialBuckets(0.01, 2, 10)),
		backoff:  reg.NewGaugeVec("mrtd_worker_backoff_seconds", "The restart delay a worker is waiting out; 0 when it is not.", "worker"),
		checks:   reg.NewCounterVec("mrtd_worker_health_checks_total", "Health checks run in a worker.", "worker"),
		failures: reg.NewCounterVec("mrtd_worker_health_check_failures_total", "Health checks of a worker that failed (exited non-zero, timed out or could not run).", "worker"),
		healthyN: reg.NewGauge("mrtd_workers_healthy", "Running workers whose last counted health check passed."),
		up:       map[string]bool{},
		starting: map[string]time.Time{},
		healthy:  map[string]bool{},
	}
	reg.NewGaugeVec("mrtd_build_info", "The runc and rootfs mrtd runs its workers with.", "runc_version", "rootfs_digest").
		WithLabelValues(runcVersion, rootfsDigest).Set(1)
	m.desired.Set(float64(desired))
	// mrtd's own process and Go figures, read when scraped.
	reg.RegisterRuntime()
	return m
}

// event is a pool hook.
func (m *metrics) event(ev pool.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name := ev.Name
	switch ev.State {
	case pool.Starting:
		m.starting[name] = ev.Since
		if ev.Restarts > 0 {
			m.restarts.WithLabelValues(name, string(ev.Reason)).Inc()
		}
		m.backoff.WithLabelValues(name).Set(0)
	case pool.Running:
		if t, ok := m.starting[name]; ok {
			m.latency.Observe(ev.Since.Sub(t).Seconds())
			delete(m.starting, name)
		}
		if ev.FromStandby {
			m.standby.Inc()
		}
	case pool.BackingOff:
		m.backoff.WithLabelValues(name).Set(ev.Delay.Seconds())
	case pool.Stopped:
		m.backoff.DeleteLabelValues(name)
	}
	if ev.State == pool.Running {
		m.up[name] = true
	} else {
		delete(m.up, name)
		delete(m.healthy, name)
	}
	m.running.Set(float64(len(m.up)))
	m.healthyN.Set(float64(len(m.healthy)))
}

// health is a pool health hook.
func (m *metrics) health(ev pool.HealthEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name := ev.Name
	m.checks.WithLabelValues(name).Inc()
	if ev.Failed {
		m.failures.WithLabelValues(name).Inc()
	}
	if ev.Health == pool.HealthHealthy && m.up[name] {
		m.healthy[name] = true
	} else {
		delete(m.healthy, name)
	}
	m.healthyN.Set(float64(len(m.healthy)))
}

func (m *metrics) setDesired(n int) { m.desired.Set(float64(n)) }

// serve serves /metrics on ln until ctx is done.
func (m *metrics) serve(ctx context.Context, ln net.Listener, log logr.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.reg)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error(err, "serving metrics")
	}
}
