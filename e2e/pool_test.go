package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

func TestPoolReplacesKilledWorker(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "3", "--backoff-min", "50ms", "--", "/bin/probe", "pause")...)
	pids := p.Running(t, 3)
	if got := mrtdtest.LiveChildren(p.Pid); len(got) != 3 {
		t.Fatalf("mrtd has children %v, want the 3 container inits and no resident runc", got)
	}
	if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev := p.Next(t, "worker exited")
	if ev["worker"].(float64) != 1 || ev["exit"] != "killed by signal SIGKILL" {
		t.Fatalf("exit event %v", ev)
	}
	ev = p.Next(t, "worker running")
	if ev["worker"].(float64) != 1 || ev["restarts"].(float64) != 1 || int(ev["pid"].(float64)) == pids[1] {
		t.Fatalf("replacement event %v, want worker 1 with 1 restart and a new pid", ev)
	}
	for _, w := range []int{0, 2} {
		if !mrtdtest.Alive(pids[w]) {
			t.Errorf("worker %d (pid %d) is gone: siblings must keep running", w, pids[w])
		}
	}
	if code := p.Terminate(t); code != 0 {
		t.Fatalf("mrtd exited %d after SIGTERM:\n%s", code, p.Log())
	}
	if strings.Count(p.Log(), `"msg":"worker running"`) != 4 {
		t.Errorf("want 4 starts in all (3 + 1 restart):\n%s", p.Log())
	}
	mrtdtest.AssertClean(t, d)
}

func TestPoolBackoffIsPerWorker(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "2", "--backoff-min", "100ms", "--backoff-max", "400ms",
		"--", "/bin/probe", "fail-if-worker", "0")...)
	// Read every event in order: worker 0 may fail before worker 1 runs.
	healthy := 0
	var delays []time.Duration
	for len(delays) < 5 {
		ev := p.NextOf(t, "worker exited", "worker running")
		if ev["msg"] == "worker running" {
			if ev["worker"].(float64) == 1 {
				if healthy != 0 {
					t.Fatalf("healthy worker restarted: %v", ev)
				}
				healthy = int(ev["pid"].(float64))
			}
			continue
		}
		if ev["worker"].(float64) != 0 {
			t.Fatalf("healthy worker exited: %v", ev)
		}
		if ev["exit"] != "exit status 1" {
			t.Fatalf("exit %v, want exit status 1", ev["exit"])
		}
		dl, err := time.ParseDuration(ev["backoff"].(string))
		if err != nil {
			t.Fatal(err)
		}
		delays = append(delays, dl)
	}
	// The first failure restarts at once; then 100, 200, 400, 400 ms,
	// each within ±20%.
	for i, base := range []time.Duration{0, 100, 200, 400, 400} {
		base *= time.Millisecond
		if delays[i] < base*8/10 || delays[i] > base*12/10 {
			t.Errorf("backoff %d is %v, want %v ±20%% (all: %v)", i, delays[i], base, delays)
		}
	}
	if !mrtdtest.Alive(healthy) {
		t.Error("the healthy worker was restarted")
	}
	if code := p.Terminate(t); code != 0 {
		t.Fatalf("mrtd exited %d", code)
	}
	if n := strings.Count(p.Log(), `"worker":1,"containerId":"mrtd-1","restarts":0,"pid"`); n != 1 {
		t.Errorf("healthy worker started %d times, want once", n)
	}
	mrtdtest.AssertClean(t, d)
}

func TestPoolStopKillsAfterTimeout(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "3", "--stop-timeout", "1s", "--", "/bin/probe", "pause-ignore")...)
	p.Ready(t, 3)
	start := time.Now()
	code := p.Terminate(t)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("mrtd exited %d:\n%s", code, p.Log())
	}
	log := p.Log()
	if n := strings.Count(log, "got terminated and ignored it"); n != 3 {
		t.Errorf("%d containers got the stop signal, want 3:\n%s", n, log)
	}
	if n := strings.Count(log, "stop timeout reached, killing"); n != 3 {
		t.Errorf("%d containers were killed after the timeout, want 3", n)
	}
	if took < time.Second {
		t.Errorf("stopped in %v, before the stop timeout", took)
	}
	mrtdtest.AssertClean(t, d)
}

func TestPoolSecondSignalKillsAtOnce(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "2", "--stop-timeout", "1h", "--", "/bin/probe", "pause-ignore")...)
	p.Ready(t, 2)
	p.Signal(syscall.SIGTERM)
	p.Next(t, "stopping workers")
	p.Signal(syscall.SIGINT)
	p.Next(t, "killing workers now")
	if code := p.Terminate(t); code != 0 { // stop() signals again: harmless
		t.Fatalf("mrtd exited %d", code)
	}
	mrtdtest.AssertClean(t, d)
}

func TestPoolRecoversFromCrash(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	args := e.DaemonArgs(d, "--workers", "3", "--", "/bin/probe", "pause")
	first := e.StartDaemon(t, d, args...)
	old := first.Running(t, 3)
	first.Signal(syscall.SIGKILL)
	first.Err()

	second := e.StartDaemon(t, d, args...)
	pids := second.Running(t, 3)
	for w, pid := range old {
		if mrtdtest.Alive(pid) {
			t.Errorf("worker %d of the killed mrtd (pid %d) still runs", w, pid)
		}
	}
	if got := mrtdtest.LiveChildren(second.Pid); len(got) != 3 {
		t.Errorf("new mrtd has children %v, want exactly 3 (workers %v)", got, pids)
	}
	ents, _ := os.ReadDir(filepath.Join(d.Runtime, "runc"))
	if len(ents) != 3 {
		t.Errorf("runc knows %d containers, want 3", len(ents))
	}
	if code := second.Terminate(t); code != 0 {
		t.Fatalf("mrtd exited %d", code)
	}
	mrtdtest.AssertClean(t, d)
}

func TestPoolOneDaemonPerInstance(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	first := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "1", "--", "/bin/probe", "pause")...)
	first.Running(t, 1)
	r := e.Run(t, d, e.DaemonArgs(d, "--workers", "1", "--", "/bin/probe", "pause")...)
	want := fmt.Sprintf("another mrtd (pid %d) is running instance mrtd", first.Pid)
	if r.Code != 1 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("second mrtd: status %d, stderr %q; want 1 and %q", r.Code, r.Stderr, want)
	}
	// Another instance in the same runtime dir is fine.
	other := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "1", "--instance", "other", "--", "/bin/probe", "pause")...)
	if ev := other.Next(t, "worker running"); ev["containerId"] != "other-0" {
		t.Fatalf("other instance started %v", ev["containerId"])
	}
	other.Terminate(t)
	first.Terminate(t)
	mrtdtest.AssertClean(t, d)
}

// TestPoolNoLeaksAfterManyRestarts compares mrtd's open fds and zombie
// children while its workers run quietly, before and after 50 failed starts.
func TestPoolNoLeaksAfterManyRestarts(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	shared := e.UserDir(t, "shared")
	marker := filepath.Join(shared, "up")
	os.WriteFile(marker, nil, 0o644)
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "2", "--backoff-min", "1ms", "--backoff-max", "2ms",
		"--mount", shared+":/srv", "--", "/bin/probe", "fail-unless", "/srv/up")...)
	pid := p.Pid
	pids := p.Running(t, 2)
	p.Ready(t, 2)
	fdsBefore := countFDs(pid)
	goroutinesBefore := p.Goroutines(t)

	// Make both workers fail at every start, 50 times in all.
	os.Remove(marker)
	for _, wp := range pids {
		syscall.Kill(wp, syscall.SIGKILL)
	}
	for i := 0; i < 50; i++ {
		p.Next(t, "worker exited")
	}
	os.WriteFile(marker, nil, 0o644)
	p.Ready(t, 4)

	// A container prints "ready" before the runc that started it has
	// exited: mrtd holds that runc's pipes and its wait goroutine a moment
	// longer. A leak stays; those go: wait, bounded, for the counts to
	// come back.
	fds, g := countFDs(pid), p.Goroutines(t)
	for deadline := time.Now().Add(10 * time.Second); (fds != fdsBefore || g != goroutinesBefore) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		fds, g = countFDs(pid), p.Goroutines(t)
	}
	if fds != fdsBefore {
		t.Errorf("mrtd has %d open fds after 50 restarts, %d before", fds, fdsBefore)
	}
	if g != goroutinesBefore {
		t.Errorf("mrtd has %d goroutines after 50 restarts, %d before", g, goroutinesBefore)
	}
	if n := mrtdtest.Zombies(pid); n != 0 {
		t.Errorf("%d zombies under mrtd after 50 restarts", n)
	}
	if got := mrtdtest.LiveChildren(pid); len(got) != 2 {
		t.Errorf("mrtd has children %v, want the 2 container inits", got)
	}
	p.StopCleanly(t, d)
}

func countFDs(pid int) int {
	n, _ := mrtdtest.FDs(pid)
	return n
}

func TestPoolBadInput(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"zero workers", []string{"--workers", "0"}, "--workers 0"},
		{"negative workers", []string{"--workers", "-1"}, "--workers -1"},
		{"workers not a number", []string{"--workers", "four"}, "invalid value"},
		{"too many workers", []string{"--workers", "100000"}, "1 to 512"},
		{"mount source missing", []string{"--mount", "/nonexistent/dir"}, "does not exist"},
		{"env without =", []string{"--env", "FOO"}, "not KEY=VALUE"},
		{"unknown network", []string{"--network", "bridge"}, "unknown --network"},
		{"unknown restart", []string{"--restart", "never"}, "unknown --restart"},
		{"malformed duration", []string{"--stop-timeout", "10 parsecs"}, "invalid value"},
		{"unknown stop signal", []string{"--stop-signal", "SIGFOO"}, "not a signal"},
		{"unknown flag", []string{"--wrokers", "2"}, "unknown flag --wrokers"},
		{"workdir not in the rootfs", []string{"--workdir", "/created/by/mrtd"}, "--workdir /created/by/mrtd is not a directory in the rootfs"},
		{"metrics address that does not parse", []string{"--metrics-addr", "notanaddr"}, "--metrics-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.Run(t, d, e.DaemonArgs(d, append(tc.args, "--", "/bin/probe", "pause")...)...)
			lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
			if r.Code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("status %d stderr %q; want 2 and one line containing %q", r.Code, r.Stderr, tc.want)
			}
		})
	}
	// What would make every start fail is refused before anything starts:
	// a mount point missing from the rootfs, a command that is not there.
	src := e.UserDir(t, "shared")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"mount point not in the rootfs", []string{"--mount", src + ":/var/nowhere", "--", "/bin/probe", "pause"}, "does not exist in the rootfs"},
		{"command not in the rootfs", []string{"--", "/bin/nosuch"}, "command /bin/nosuch does not exist in the rootfs"},
		{"command not in PATH", []string{"--", "nosuch"}, `command "nosuch" is not in the rootfs (searched PATH=`},
		{"interpreter missing", []string{"--", "/bin/no-interp"}, "its interpreter /missing/interp does not exist in the rootfs"},
		{"a file mounted on a directory", []string{"--mount", filepath.Join(e.Rootfs, "bin", "probe") + ":/srv", "--", "/bin/probe", "pause"}, "is a file but /srv is a directory"},
		{"a source the containers cannot read", []string{"--mount", "/etc/shadow:/etc/not-executable", "--", "/bin/probe", "pause"}, "cannot read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.Run(t, d, e.DaemonArgs(d, tc.args...)...)
			lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
			if r.Code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("status %d stderr %q; want 2 and one line containing %q", r.Code, r.Stderr, tc.want)
			}
		})
	}
	mrtdtest.AssertClean(t, d)
}

func TestPoolMountAndEnv(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	shared := e.UserDir(t, "shared")
	if err := os.WriteFile(filepath.Join(shared, "job"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(shared, "job"), e.UID, e.GID)
	envFile := filepath.Join(e.UserDir(t, "envdir"), "env")
	os.WriteFile(envFile, []byte("# comment\nFROM_FILE=1\n\nGEARMAN_SERVER=file\n"), 0o644)
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "1", "--mount", shared+":/srv", "--env-file", envFile,
		"--env", "GEARMAN_SERVER=127.0.0.1:4730", "--", "/bin/probe", "cat", "/srv/job")...)
	ev := p.Next(t, "output")
	if ev["line"] != "from the host" || ev["stream"] != "stdout" || ev["containerId"] != "mrtd-0" {
		t.Fatalf("output event %v", ev)
	}
	p.Terminate(t)
	p2 := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "1", "--instance", "ingest", "--env-file", envFile,
		"--env", "GEARMAN_SERVER=127.0.0.1:4730", "--", "/bin/probe", "cat", "/proc/self/environ")...)
	ev = p2.Next(t, "output")
	env := ev["line"].(string)
	for _, want := range []string{"FROM_FILE=1", "GEARMAN_SERVER=127.0.0.1:4730", "MRTD_WORKER=0", "MRTD_INSTANCE=ingest"} {
		if !strings.Contains(env, want) {
			t.Errorf("environment %q lacks %s", env, want)
		}
	}
	if strings.Contains(env, "GEARMAN_SERVER=file") {
		t.Errorf("--env does not override --env-file: %q", env)
	}
	p2.Terminate(t)
	mrtdtest.AssertClean(t, d)
}

// TestPoolStartFailureBacksOff: a start that fails in runc, which mrtd
// could not foresee (the command was removed from the rootfs after mrtd
// checked it), backs off like a crash and logs runc's reason in one line.
func TestPoolStartFailureBacksOff(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	rootfs := filepath.Join(e.UserDir(t, "copy"), "rootfs")
	if out, err := exec.Command("cp", "-a", e.Rootfs, rootfs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if err := mrtdtest.CopyFile(filepath.Join(rootfs, "bin", "probe"), filepath.Join(rootfs, "bin", "going"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := e.StartDaemon(t, d, "--runc", e.Runc, "--rootfs", rootfs, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime,
		"--workers", "1", "--backoff-min", "10ms", "--backoff-max", "20ms", "--stop-timeout", "3s", "--", "/bin/going", "fail-unless", "/nonexistent")
	p.Next(t, "worker exited")
	if err := os.Remove(filepath.Join(rootfs, "bin", "going")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		ev := p.Next(t, "worker failed to start")
		if reason, _ := ev["reason"].(string); !strings.Contains(reason, "/bin/going") || strings.Contains(reason, "\n") {
			t.Fatalf("reason %q: want runc's reason, in one line", reason)
		}
	}
	p.StopCleanly(t, d)
}

func TestPoolEndsWhenRootfsIsGone(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	rootfs := filepath.Join(e.UserDir(t, "copy"), "rootfs")
	if out, err := exec.Command("cp", "-a", e.Rootfs, rootfs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	p := e.StartDaemon(t, d, "--runc", e.Runc, "--rootfs", rootfs, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime,
		"--workers", "2", "--backoff-min", "10ms", "--", "/bin/probe", "pause")
	pids := p.Running(t, 2)
	if err := os.RemoveAll(rootfs); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	err := p.Wait(time.Minute)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("mrtd ended with %v, want exit status 1:\n%s", err, p.Log())
	}
	lines := p.Lines()
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "mrtd: ") || !strings.Contains(last, rootfs+" is gone") || !strings.Contains(last, "restore it, then start mrtd again") {
		t.Fatalf("last line %q, want a one-line reason", last)
	}
	if mrtdtest.Alive(pids[1]) {
		t.Errorf("worker 1 (pid %d) still runs after mrtd exited", pids[1])
	}
	mrtdtest.AssertClean(t, d)
}

// TestEndToEndPool runs the real bin/mrtd's default command, the demo
// worker of the embedded rootfs, as an unprivileged user.
func TestEndToEndPool(t *testing.T) {
	e := needIntegration(t)
	local := e.RealMrtd(t)
	d := e.NewDirs(t)
	e2 := *e
	e2.Mrtd = local
	p := e2.StartDaemon(t, d, "--workers", "2", "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--env", "MRTD_DEMO_INTERVAL=0.1")
	p.Running(t, 2)
	p.WaitLog(t, "heartbeat 2", 2)
	if code := p.Terminate(t); code != 0 {
		t.Fatalf("mrtd exited %d:\n%s", code, p.Log())
	}
	if n := strings.Count(p.Log(), "SIGTERM, stopping"); n != 2 {
		t.Errorf("%d demo workers stopped on SIGTERM, want 2:\n%s", n, p.Log())
	}
	mrtdtest.AssertClean(t, d)
}

// TestPoolSurvivesClosedLog closes the pipe mrtd logs to, as a log reader
// that goes away would: mrtd keeps supervising and still stops cleanly.
func TestPoolSurvivesClosedLog(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "2", "--", "/bin/probe", "pause")...)
	pids := p.Running(t, 2)
	p.Ready(t, 2)
	p.CloseLog()
	syscall.Kill(pids[0], syscall.SIGKILL) // logs into the closed pipe
	time.Sleep(200 * time.Millisecond)
	if !mrtdtest.Alive(p.Pid) {
		t.Fatal("mrtd died when its log pipe closed")
	}
	p.StopCleanly(t, d)
}

// TestPoolInstancesSharingAPrefix: an instance's start removes only its own
// leftovers, not the live workers of an instance whose name starts with
// its name and a dash.
func TestPoolInstancesSharingAPrefix(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	longer := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "1", "--instance", "mrtd-b", "--", "/bin/probe", "pause")...)
	pid := longer.Running(t, 1)[0]
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "1", "--", "/bin/probe", "pause")...)
	p.Running(t, 1)
	if !mrtdtest.Alive(pid) || strings.Contains(p.Log(), "mrtd-b-0") {
		t.Errorf("starting instance mrtd removed instance mrtd-b's worker (pid %d alive: %v):\n%s", pid, mrtdtest.Alive(pid), p.Log())
	}
	p.Terminate(t)
	longer.Terminate(t)
	mrtdtest.AssertClean(t, d)
}
