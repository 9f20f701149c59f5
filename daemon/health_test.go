package daemon

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/image"
	"github.com/mrt-project/mrt/pool"
)

// healthRootfs is a rootfs with /bin/check and, when sh, /bin/sh.
func healthRootfs(t *testing.T, sh bool) container.Options {
	t.Helper()
	dir := t.TempDir()
	bins := []string{"check"}
	if sh {
		bins = append(bins, "sh")
	}
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	for _, b := range bins {
		if err := os.WriteFile(filepath.Join(dir, "bin", b), []byte("\x7fELF"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return container.Options{Rootfs: dir, Args: []string{"/bin/check"}}
}

func TestHealthCheck(t *testing.T) {
	t.Parallel()
	def := config.DefaultHealth()
	img := func(test []string, interval time.Duration, retries int) *image.ImageConfig {
		return &image.ImageConfig{Ref: "test/img:1", Healthcheck: &image.Healthcheck{Test: test, Interval: interval, Retries: retries}}
	}
	for _, tc := range []struct {
		name string
		cmd  string
		set  []string // the --health-* keys given
		edit func(*config.Health)
		img  *image.ImageConfig
		want *pool.HealthCheck // nil: no check
	}{
		{"none at all", "", nil, nil, nil, nil},
		{"an image without one", "", nil, nil, &image.ImageConfig{}, nil},
		{"--health-cmd", "/bin/check -q", []string{"health-cmd"}, nil, nil,
			&pool.HealthCheck{Cmd: []string{"/bin/sh", "-c", "/bin/check -q"}, Interval: def.Interval, Timeout: def.Timeout, Retries: def.Retries}},
		{"--health-cmd as an array, with settings", `["/bin/check", "-q"]`, []string{"health-cmd", "health-interval", "health-retries"},
			func(h *config.Health) { h.Interval, h.Retries = time.Second, 1 }, nil,
			&pool.HealthCheck{Cmd: []string{"/bin/check", "-q"}, Interval: time.Second, Timeout: def.Timeout, Retries: 1}},
		{"the image's CMD and its settings", "", nil, nil, img([]string{"CMD", "/bin/check", "x"}, 5*time.Second, 2),
			&pool.HealthCheck{Cmd: []string{"/bin/check", "x"}, Interval: 5 * time.Second, Timeout: def.Timeout, Retries: 2}},
		{"the image's CMD-SHELL", "", nil, nil, img([]string{"CMD-SHELL", "check"}, 0, 0),
			&pool.HealthCheck{Cmd: []string{"/bin/sh", "-c", "check"}, Interval: def.Interval, Timeout: def.Timeout, Retries: def.Retries}},
		{"flags win field by field", "", []string{"health-interval"}, func(h *config.Health) { h.Interval = time.Minute },
			img([]string{"CMD", "/bin/check"}, 5*time.Second, 2),
			&pool.HealthCheck{Cmd: []string{"/bin/check"}, Interval: time.Minute, Timeout: def.Timeout, Retries: 2}},
		{"--health-cmd over the image's, its interval kept", "/bin/check", []string{"health-cmd"}, nil,
			img([]string{"CMD", "/bin/other"}, 5*time.Second, 0),
			&pool.HealthCheck{Cmd: []string{"/bin/sh", "-c", "/bin/check"}, Interval: 5 * time.Second, Timeout: def.Timeout, Retries: def.Retries}},
		{"--health-cmd none turns the image's off", "none", []string{"health-cmd"}, nil, img([]string{"CMD", "/bin/check"}, 0, 0), nil},
		{"the image's NONE", "", nil, nil, img([]string{"NONE"}, 0, 0), nil},
		{"an image's test mrtd cannot run is left out", "", nil, nil, img([]string{"WHAT", "x"}, 0, 0), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := Settings{Pool: config.DefaultPool(), HealthSet: map[string]bool{}}
			st.Pool.Health.Cmd = tc.cmd
			if tc.edit != nil {
				tc.edit(&st.Pool.Health)
			}
			for _, k := range tc.set {
				st.HealthSet[k] = true
			}
			got, err := healthCheck(st, tc.img, healthRootfs(t, true), logr.Discard())
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tc.want == nil) || got != nil && (!slices.Equal(got.Cmd, tc.want.Cmd) ||
				got.Interval != tc.want.Interval || got.Timeout != tc.want.Timeout || got.Retries != tc.want.Retries ||
				got.StartPeriod != tc.want.StartPeriod) {
				t.Errorf("healthCheck = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestHealthCheckCommandMissing: a check no worker could run is a usage
// error before any worker starts, naming the fix.
func TestHealthCheckCommandMissing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, cmd string
		img       *image.ImageConfig
		want      string
	}{
		{"not in the rootfs", `["/bin/nope"]`, nil, "give a command that is in the rootfs"},
		{"no shell", "check", nil, `the rootfs has no /bin/sh: give the command as a JSON array`},
		{"the image's", "", &image.ImageConfig{Healthcheck: &image.Healthcheck{Test: []string{"CMD", "/bin/nope"}}}, `the image's HEALTHCHECK ["CMD" "/bin/nope"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := Settings{Pool: config.DefaultPool()}
			st.Pool.Health.Cmd = tc.cmd
			_, err := healthCheck(st, tc.img, healthRootfs(t, false), logr.Discard())
			var ue *config.UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--health-cmd none") {
				t.Fatalf("error %v, want a usage error with %q", err, tc.want)
			}
		})
	}
}

func TestHealthStatus(t *testing.T) {
	t.Parallel()
	if healthStatus(pool.HealthStatus{}) != nil {
		t.Error("a worker without a health check has a health")
	}
	at := time.Unix(100, 0)
	h := healthStatus(pool.HealthStatus{Health: pool.HealthUnhealthy, FailingStreak: 3, LastCheck: at, LastExitCode: 1, LastOutput: "down"})
	if h == nil || h.Status != "unhealthy" || h.FailingStreak != 3 || !h.LastCheck.Equal(at) || h.LastExitCode != 1 || h.LastOutput != "down" {
		t.Errorf("healthStatus = %+v", h)
	}
}

func TestMetricsHealth(t *testing.T) {
	t.Parallel()
	m := newMetrics(2, "1.0", "dir")
	m.event(pool.Event{Status: pool.Status{Name: "w-0", State: pool.Running}})
	m.health(pool.HealthEvent{Name: "w-0", HealthStatus: pool.HealthStatus{Health: pool.HealthHealthy}})
	m.health(pool.HealthEvent{Name: "w-0", HealthStatus: pool.HealthStatus{Health: pool.HealthHealthy}})
	m.health(pool.HealthEvent{Name: "w-0", Failed: true, HealthStatus: pool.HealthStatus{Health: pool.HealthHealthy, FailingStreak: 1}})
	m.health(pool.HealthEvent{Name: "w-1", HealthStatus: pool.HealthStatus{Health: pool.HealthHealthy}}) // not running
	text := scrapeRegistry(t, m)
	for _, want := range []string{
		`mrtd_worker_health_checks_total{worker="w-0"} 3`,
		`mrtd_worker_health_check_failures_total{worker="w-0"} 1`,
		`mrtd_worker_health_checks_total{worker="w-1"} 1`,
		"mrtd_workers_healthy 1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	m.event(pool.Event{Status: pool.Status{Name: "w-0", State: pool.BackingOff}})
	if text := scrapeRegistry(t, m); !strings.Contains(text, "mrtd_workers_healthy 0") {
		t.Errorf("a worker that stopped still counts as healthy:\n%s", text)
	}
}

// scrapeRegistry returns the metrics m serves, in the text format.
func scrapeRegistry(t *testing.T, m *metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.reg.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
