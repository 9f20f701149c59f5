package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mrt-project/mrt/pool"
)

// metrics are the pool's Prometheus metrics, fed by supervisor events.
type metrics struct {
	reg      *prometheus.Registry
	desired  prometheus.Gauge
	running  prometheus.Gauge
	restarts *prometheus.CounterVec
	latency  prometheus.Histogram
	backoff  *prometheus.GaugeVec
	// The health check's: checks and failed checks, and the healthy.
	checks   *prometheus.CounterVec
	failures *prometheus.CounterVec
	healthyN prometheus.Gauge

	mu       sync.Mutex
	up       map[string]bool
	starting map[string]time.Time
	healthy  map[string]bool
}

func newMetrics(desired int, runcVersion, rootfsDigest string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		desired: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mrtd_workers_desired", Help: "Workers the pool keeps running.",
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mrtd_workers_running", Help: "Workers whose container runs.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mrtd_worker_restarts_total", Help: "Restarts of a worker, by the reason its last run ended.",
		}, []string{"worker", "reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mrtd_worker_start_seconds",
			Help:    "Time from a worker's start to its container running.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 10),
		}),
		backoff: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mrtd_worker_backoff_seconds", Help: "The restart delay a worker is waiting out; 0 when it is not.",
		}, []string{"worker"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mrtd_worker_health_checks_total", Help: "Health checks run in a worker.",
		}, []string{"worker"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mrtd_worker_health_check_failures_total", Help: "Health checks of a worker that failed (exited non-zero, timed out or could not run).",
		}, []string{"worker"}),
		healthyN: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mrtd_workers_healthy", Help: "Running workers whose last counted health check passed.",
		}),
		up:       map[string]bool{},
		starting: map[string]time.Time{},
		healthy:  map[string]bool{},
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "mrtd_build_info",
		Help:        "The runc and rootfs mrtd runs its workers with.",
		ConstLabels: prometheus.Labels{"runc_version": runcVersion, "rootfs_digest": rootfsDigest},
	})
	build.Set(1)
	m.desired.Set(float64(desired))
	m.reg.MustRegister(m.desired, m.running, m.restarts, m.latency, m.backoff, m.checks, m.failures, m.healthyN, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// event is a pool hook.
func (m *metrics) event(ev pool.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name := ev.ContainerID
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
	name := ev.ContainerID
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
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error(err, "serving metrics")
	}
}
