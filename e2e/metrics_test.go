package e2e

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestMetricsShowRestart(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "2", "--backoff-min", "10ms", "--metrics-addr", "127.0.0.1:0",
		"--", "/bin/probe", "pause")...)
	addr := p.Next(t, "serving metrics")["addr"].(string)
	pids := p.Running(t, 2)
	syscall.Kill(pids[1], syscall.SIGKILL)
	p.Next(t, "worker exited")
	ev := p.Next(t, "worker running")
	if ev["worker"].(float64) != 1 {
		t.Fatalf("restart event %v", ev)
	}
	// The hook that feeds the metrics runs right after the log line.
	deadline := time.Now().Add(10 * time.Second)
	var m string
	for {
		m = scrape(t, addr)
		if strings.Contains(m, `mrtd_worker_restarts_total{reason="signaled",worker="mrtd-1"} 1`) && strings.Contains(m, "mrtd_workers_running 2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no restart in the metrics:\n%s", m)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{
		"mrtd_workers_desired 2",
		`mrtd_build_info{rootfs_digest="dir",runc_version="external"} 1`,
		"mrtd_worker_start_seconds_count 3",
		`mrtd_worker_backoff_seconds{worker="mrtd-1"} 0`,
		"go_goroutines ",
		"process_open_fds ",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if regexp.MustCompile(`mrtd_worker_restarts_total\{reason="[a-z_0-9]+",worker="mrtd-0"\}`).MatchString(m) {
		t.Error("worker 0 counted a restart")
	}
	p.StopCleanly(t, d)
}
