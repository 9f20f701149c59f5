package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReload edits the config file under a running pool: the worker count
// and one worker's environment change, and only that worker restarts; an
// invalid edit changes nothing.
func TestReload(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	path := filepath.Join(e.UserDir(t, "conf"), "config.toml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chown(path, e.UID, e.GID)
	}
	conf := func(workers int, env1 string) string {
		return fmt.Sprintf("workers = %d\nenv = [\"SHARED=1\"]\ncommand = [\"/bin/probe\", \"pause\"]\n[worker.1]\nenv = [\"ONLY=%s\"]\n", workers, env1)
	}
	write(conf(3, "a"))
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--config", path)...)
	p.Running(t, 3)
	before := waitRunning(t, e, d, 3)

	write(conf(4, "b"))
	p.Signal(syscall.SIGHUP)
	if ev := p.Next(t, "reloaded"); ev["restarted"] != "[1]" || ev["workers"].(float64) != 4 {
		t.Fatalf("reload event %v, want worker 1 restarted and 4 workers", ev)
	}
	// The reload restarts worker 1 after it returns: wait for its new
	// container.
	after := waitRunning(t, e, d, 4)
	for deadline := time.Now().Add(30 * time.Second); after[1] == before[1] && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		after = waitRunning(t, e, d, 4)
	}
	for _, w := range []int{0, 2} {
		if after[w] != before[w] {
			t.Errorf("worker %d restarted by a reload that did not change it", w)
		}
	}
	if after[1] == before[1] {
		t.Error("worker 1 kept running with its old environment")
	}
	envOf := func(pid int) string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		return string(b)
	}
	// Running, to mrtd, is once runc start returned: the init may still be
	// runc's, with runc's environment, until it execs the command.
	env := envOf(after[1])
	for deadline := time.Now().Add(10 * time.Second); strings.Contains(env, "_LIBCONTAINER_") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		env = envOf(after[1])
	}
	if !strings.Contains(env, "ONLY=b") || !strings.Contains(env, "SHARED=1") {
		t.Errorf("worker 1's environment after reload: %q", env)
	}

	// An invalid edit: logged, nothing changes.
	write(conf(4, "c") + "bogus = 1\n")
	p.Signal(syscall.SIGHUP)
	if ev := p.Next(t, "reload failed; the running configuration stays"); !strings.Contains(fmt.Sprint(ev["error"]), "bogus") {
		t.Fatalf("failed reload event %v", ev)
	}
	time.Sleep(100 * time.Millisecond)
	if now := waitRunning(t, e, d, 4); fmt.Sprint(now) != fmt.Sprint(after) {
		t.Errorf("an invalid reload changed the workers: %v -> %v", after, now)
	}
	p.StopCleanly(t, d)
}

// TestReloadKeepsScaledCount: a reload keeps the count mrtd scale set
// unless the file's workers changed since the last load; then the file
// wins. mrtd config says that a daemon runs and what it runs.
func TestReloadKeepsScaledCount(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	path := filepath.Join(e.UserDir(t, "conf"), "config.toml")
	write := func(workers int) {
		t.Helper()
		body := fmt.Sprintf("workers = %d\ncommand = [\"/bin/probe\", \"pause\"]\n", workers)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chown(path, e.UID, e.GID)
	}
	args := e.DaemonArgs(d, "--config", path)
	write(2)
	if r := e.Run(t, d, append([]string{"config"}, args...)...); r.Code != 0 || strings.Contains(r.Stdout, "running mrtd") {
		t.Fatalf("mrtd config with no daemon: status %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	p := e.StartDaemon(t, d, args...)
	p.Running(t, 2)
	waitRunning(t, e, d, 2)

	if r := ctl(t, e, d, "scale", "4"); r.Code != 0 {
		t.Fatalf("mrtd scale 4: %d %q", r.Code, r.Stderr)
	}
	scaled := waitRunning(t, e, d, 4)
	r := e.Run(t, d, append([]string{"config"}, args...)...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "# the running mrtd (instance mrtd) runs 4 workers; the settings below are a fresh parse") {
		t.Errorf("mrtd config beside a running daemon: status %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}

	// The file's workers did not change: the scaled count stays.
	p.Signal(syscall.SIGHUP)
	if ev := p.Next(t, "reloaded"); ev["workers"] != 4.0 || ev["workersFrom"] != "scale" {
		t.Fatalf("reload event %v, want the scaled 4 workers kept", ev)
	}
	if now := waitRunning(t, e, d, 4); fmt.Sprint(now) != fmt.Sprint(scaled) {
		t.Errorf("a reload that kept the count changed the workers: %v -> %v", scaled, now)
	}

	// The file's workers changed: the file wins.
	write(3)
	p.Signal(syscall.SIGHUP)
	if ev := p.Next(t, "reloaded"); ev["workers"] != 3.0 || ev["workersFrom"] != "config" {
		t.Fatalf("reload event %v, want the file's 3 workers", ev)
	}
	waitRunning(t, e, d, 3)
	p.StopCleanly(t, d)
}
