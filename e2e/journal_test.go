package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// TestPoolLogsToJournal runs the pool with --log-format journal against a
// journal socket the test opened.
func TestPoolLogsToJournal(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	sockPath, entries := e.ListenJournal(t)
	cmd := e.Command(context.Background(), e.Mrtd, d, e.DaemonArgs(d, "--workers", "2", "--log-format", "journal",
		"--backoff-min", "1h", "--backoff-max", "1h", "--", "/bin/probe", "stderr", "to stderr")...)
	cmd.Env = append(cmd.Env, "MRTD_JOURNAL_SOCKET="+sockPath)
	p := mrtdtest.StartCmd(t, cmd)

	var running, lines []map[string]string
	timeout := time.After(30 * time.Second)
	for len(running) < 2 || len(lines) < 2 {
		select {
		case f := <-entries:
			switch f["MESSAGE"] {
			case "worker running":
				running = append(running, f)
			case "to stderr":
				lines = append(lines, f)
			}
		case <-timeout:
			t.Fatalf("want 2 starts and 2 container lines; got %v and %v; stderr:\n%s", running, lines, p.Log())
		}
	}
	for _, f := range running {
		if f["PRIORITY"] != "6" || f["SYSLOG_IDENTIFIER"] != "mrtd" || f["MRTD_INSTANCE"] != "mrtd" ||
			f["CONTAINER_ID"] != "mrtd-"+f["MRTD_WORKER"] || f["MRTD_PID"] == "" {
			t.Errorf("lifecycle entry %v", f)
		}
	}
	workers := map[string]bool{}
	for _, f := range lines {
		if f["PRIORITY"] != "4" || f["CONTAINER_ID"] != "mrtd-"+f["MRTD_WORKER"] || f["MRTD_STREAM"] != "stderr" {
			t.Errorf("container line entry %v: want its worker's fields at warning priority", f)
		}
		workers[f["MRTD_WORKER"]] = true
	}
	if len(workers) != 2 {
		t.Errorf("container lines came from workers %v, want both", workers)
	}
	if code := p.Terminate(t); code != 0 {
		t.Fatalf("mrtd exited %d", code)
	}
	if strings.TrimSpace(p.Log()) != "" {
		t.Errorf("with the journal, stderr stays quiet; got:\n%s", p.Log())
	}
	mrtdtest.AssertClean(t, d)
}

func TestJournalFallsBackToStderr(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	cmd := e.Command(context.Background(), e.Mrtd, d, e.DaemonArgs(d, "--workers", "1", "--log-format", "journal", "--", "/bin/probe", "pause")...)
	cmd.Env = append(cmd.Env, "MRTD_JOURNAL_SOCKET=/nonexistent/journal.sock")
	p := mrtdtest.StartCmd(t, cmd)
	if ev := p.Next(t, "journal unavailable, logging to stderr"); ev["socket"] != "/nonexistent/journal.sock" {
		t.Fatalf("fallback event %v", ev)
	}
	p.Ready(t, 1)
	p.StopCleanly(t, d)
}
