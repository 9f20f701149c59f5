package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// daemonProc is a running `mrtd --workers N` whose JSON log the test reads.
type daemonProc struct {
	cmd    *exec.Cmd
	stderr io.ReadCloser
	events chan map[string]any
	done   chan struct{} // closed when the log ends
	mu     sync.Mutex
	lines  []string
}

// daemonArgs point mrtd at the test's runc, rootfs and directories. The
// short stop timeout bounds a stop that reaches a probe before its signal
// handler is installed (a pid 1 ignores signals it does not handle); a
// later --stop-timeout in extra wins.
func (e *integrationEnv) daemonArgs(d dirs, extra ...string) []string {
	return append([]string{"--runc", e.runc, "--rootfs", e.rootfs, "--cache-dir", d.cache, "--runtime-dir", d.runtime, "--stop-timeout", "3s"}, extra...)
}

func (e *integrationEnv) startDaemon(t *testing.T, d dirs, args ...string) *daemonProc {
	t.Helper()
	return e.startCmd(t, e.command(context.Background(), e.mrtd, d, args...))
}

// startCmd starts a prepared mrtd command and follows its log.
func (e *integrationEnv) startCmd(t *testing.T, cmd *exec.Cmd) *daemonProc {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{cmd: cmd, stderr: stderr, events: make(chan map[string]any, 10000), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				p.events <- ev
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// log returns everything the daemon logged so far.
func (p *daemonProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// next returns the next event with message msg, skipping others.
func (p *daemonProc) next(t *testing.T, msg string) map[string]any {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case ev := <-p.events:
			if ev["msg"] == msg {
				return ev
			}
		case <-timeout.C:
			t.Fatalf("no %q in the log:\n%s", msg, p.log())
		}
	}
}

// nextOf returns the next event with one of msgs.
func (p *daemonProc) nextOf(t *testing.T, msgs ...string) map[string]any {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case ev := <-p.events:
			for _, m := range msgs {
				if ev["msg"] == m {
					return ev
				}
			}
		case <-timeout.C:
			t.Fatalf("none of %q in the log:\n%s", msgs, p.log())
		}
	}
}

// goroutines asks mrtd for its status with SIGUSR1 and returns its
// goroutine count.
func (p *daemonProc) goroutines(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGUSR1)
	return int(p.next(t, "status")["goroutines"].(float64))
}

// waitLog waits until the log holds at least n occurrences of substr.
func (p *daemonProc) waitLog(t *testing.T, substr string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(p.log(), substr) < n {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d of %q in the log:\n%s", n, substr, p.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ready waits until n containers in all printed "ready": their signal
// handlers are installed.
func (p *daemonProc) ready(t *testing.T, n int) {
	t.Helper()
	p.waitLog(t, `"line":"ready"`, n)
}

// running waits for n "worker running" events and returns pid by worker.
func (p *daemonProc) running(t *testing.T, n int) map[int]int {
	t.Helper()
	pids := map[int]int{}
	for len(pids) < n {
		ev := p.next(t, "worker running")
		pids[int(ev["worker"].(float64))] = int(ev["pid"].(float64))
	}
	return pids
}

// stop sends SIGTERM and returns mrtd's exit status.
func (p *daemonProc) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.done
	err := p.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// stopCleanly stops mrtd, which must exit 0 and leave no container or
// bundle behind.
func (p *daemonProc) stopCleanly(t *testing.T, d dirs) {
	t.Helper()
	if code := p.stop(t); code != 0 {
		t.Fatalf("mrtd exited %d", code)
	}
	assertClean(t, d)
}

// alive reports whether pid is a process that has not exited.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// children returns the live children of pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) && fields[0] != "Z" {
			out = append(out, c)
		}
	}
	return out
}

func zombies(pid int) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) && fields[0] == "Z" {
			n++
		}
	}
	return n
}

func TestPoolReplacesKilledWorker(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	p := e.startDaemon(t, d, e.daemonArgs(d, "--workers", "3", "--backoff-min", "50ms", "--", "/bin/probe", "pause")...)
	pids := p.running(t, 3)
	if got := children(p.cmd.Process.Pid); len(got) != 3 {
		t.Fatalf("mrtd has children %v, want the 3 container inits and no resident runc", got)
	}
	if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev := p.next(t, "worker exited")
	if ev["worker"].(float64) != 1 || ev["exit"] != "killed by signal SIGKILL" {
		t.Fatalf("exit event %v", ev)
	}
	ev = p.next(t, "worker running")
	if ev["worker"].(float64) != 1 || ev["restarts"].(float64) != 1 || int(ev["pid"].(float64)) == pids[1] {
		t.Fatalf("replacement event %v, want worker 1 with 1 restart and a new pid", ev)
	}
	for _, w := range []int{0, 2} {
		if !alive(pids[w]) {
			t.Errorf("worker %d (pid %d) is gone: siblings must keep running", w, pids[w])
		}
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("mrtd exited %d after SIGTERM:\n%s", code, p.log())
	}
	if strings.Count(p.log(), `"msg":"worker running"`) != 4 {
		t.Errorf("want 4 starts in all (3 + 1 restart):\n%s", p.log())
	}
	assertClean(t, d)
}

func TestPoolBackoffIsPerWorker(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	p := e.startDaemon(t, d, e.daemonArgs(d, "--workers", "2", "--backoff-min", "100ms", "--backoff-max", "400ms",
		"--", "/bin/probe", "fail-if-worker", "0")...)
	// Read every event in order: worker 0 may fail before worker 1 runs.
	healthy := 0
	var delays []time.Duration
	for len(delays) < 5 {
		ev := p.nextOf(t, "worker exited", "worker running")
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
	// 100, 200, 400, 400, 400 ms, each within ±20%.
	for i, base := range []time.Duration{100, 200, 400, 400, 400} {
		base *= time.Millisecond
		if delays[i] < base*8/10 || delays[i] > base*12/10 {
			t.Errorf("backoff %d is %v, want %v ±20%% (all: %v)", i, delays[i], base, delays)
		}
	}
	if !alive(healthy) {
		t.Error("the healthy worker was restarted")
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("mrtd exited %d", code)
	}
	if n := strings.Count(p.log(), `"worker":1,"containerId":"mrtd-1","restarts":0,"pid"`); n != 1 {
		t.Errorf("healthy worker started %d times, want once", n)
	}
	assertClean(t, d)
}

func TestPoolStopKillsAfterTimeout(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	p := e.startDaemon(t, d, e.daemonArgs(d, "--workers", "3", "--stop-timeout", "1s", "--", "/bin/probe", "pause-ignore")...)
	p.ready(t, 3)
	start := time.Now()
	code := p.stop(t)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("mrtd exited %d:\n%s", code, p.log())
	}
	log := p.log()
	if n := strings.Count(log, "got terminated and ignored it"); n != 3 {
		t.Errorf("%d containers got the stop signal, want 3:\n%s", n, log)
	}
	if n := strings.Count(log, "stop timeout reached, killing"); n != 3 {
		t.Errorf("%d containers were killed after the timeout, want 3", n)
	}
	if took < time.Second {
		t.Errorf("stopped in %v, before the stop timeout", took)
	}
	assertClean(t, d)
}

func TestPoolSecondSignalKillsAtOnce(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	p := e.startDaemon(t, d, e.daemonArgs(d, "--workers", "2", "--stop-timeout", "1h", "--", "/bin/probe", "pause-ignore")...)
	p.ready(t, 2)
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.next(t, "stopping workers")
	p.cmd.Process.Signal(syscall.SIGINT)
	p.next(t, "killing workers now")
	if code := p.stop(t); code != 0 { // stop() signals again: harmless
		t.Fatalf("mrtd exited %d", code)
	}
	assertClean(t, d)
}

func TestPoolRecoversFromCrash(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	args := e.daemonArgs(d, "--workers", "3", "--", "/bin/probe", "pause")
	first := e.startDaemon(t, d, args...)
	old := first.running(t, 3)
	first.cmd.Process.Signal(syscall.SIGKILL)
	first.cmd.Wait()
	<-first.done

	second := e.startDaemon(t, d, args...)
	pids := second.running(t, 3)
	for w, pid := range old {
		if alive(pid) {
			t.Errorf("worker %d of the killed mrtd (pid %d) still runs", w, pid)
		}
	}
	if got := children(second.cmd.Process.Pid); len(got) != 3 {
		t.Errorf("new mrtd has children %v, want exactly 3 (workers %v)", got, pids)
	}
	ents, _ := os.ReadDir(filepath.Join(d.runtime, "runc"))
	if len(ents) != 3 {
		t.Errorf("runc knows %d containers, want 3", len(ents))
	}
	if code := second.stop(t); code != 0 {
		t.Fatalf("mrtd exited %d", code)
	}
	assertClean(t, d)
}

func TestPoolOneDaemonPerInstance(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	first := e.startDaemon(t, d, e.daemonArgs(d, "--workers", "1", "--", "/bin/probe", "pause")...)
	first.running(t, 1)
	r := e.run(t, d, e.daemonArgs(d, "--workers", "1", "--", "/bin/probe", "pause")...)
	want := fmt.Sprintf("another mrtd (pid %d) is running instance mrtd", first.cmd.Process.Pid)
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Fatalf("second mrtd: status %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
	}
	// Another instance in the same runtime dir is fine.
	other := e.startDaemon(t, d, e.daemonArgs(d, "--workers", "1", "--instance", "other", "--", "/bin/probe", "pause")...)
	if ev := other.next(t, "worker running"); ev["containerId"] != "other-0" {
		t.Fatalf("other instance started %v", ev["containerId"])
	}
	other.stop(t)
	first.stop(t)
	assertClean(t, d)
}

// TestPoolNoLeaksAfterManyRestarts compares mrtd's open fds and zombie
// children while its workers run quietly, before and after 50 failed starts.
func TestPoolNoLeaksAfterManyRestarts(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	shared := e.userDir(t, "shared")
	marker := filepath.Join(shared, "up")
	os.WriteFile(marker, nil, 0o644)
	p := e.startDaemon(t, d, e.daemonArgs(d, "--workers", "2", "--backoff-min", "1ms", "--backoff-max", "2ms",
		"--mount", shared+":/srv", "--", "/bin/probe", "fail-unless", "/srv/up")...)
	pid := p.cmd.Process.Pid
	pids := p.running(t, 2)
	p.ready(t, 2)
	fdsBefore := countFDs(pid)
	goroutinesBefore := p.goroutines(t)

	// Make both workers fail at every start, 50 times in all.
	os.Remove(marker)
	for _, wp := range pids {
		syscall.Kill(wp, syscall.SIGKILL)
	}
	for i := 0; i < 50; i++ {
		p.next(t, "worker exited")
	}
	os.WriteFile(marker, nil, 0o644)
	p.ready(t, 4)

	if fds := countFDs(pid); fds != fdsBefore {
		t.Errorf("mrtd has %d open fds after 50 restarts, %d before", fds, fdsBefore)
	}
	if g := p.goroutines(t); g != goroutinesBefore {
		t.Errorf("mrtd has %d goroutines after 50 restarts, %d before", g, goroutinesBefore)
	}
	if n := zombies(pid); n != 0 {
		t.Errorf("%d zombies under mrtd after 50 restarts", n)
	}
	if got := children(pid); len(got) != 2 {
		t.Errorf("mrtd has children %v, want the 2 container inits", got)
	}
	p.stopCleanly(t, d)
}

func countFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

func TestPoolBadInput(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
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
			r := e.run(t, d, e.daemonArgs(d, append(tc.args, "--", "/bin/probe", "pause")...)...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("status %d stderr %q; want 2 and one line containing %q", r.code, r.stderr, tc.want)
			}
		})
	}
	// What would make every start fail is refused before anything starts:
	// a mount point missing from the rootfs, a command that is not there.
	src := e.userDir(t, "shared")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"mount point not in the rootfs", []string{"--mount", src + ":/var/nowhere", "--", "/bin/probe", "pause"}, "does not exist in the rootfs"},
		{"command not in the rootfs", []string{"--", "/bin/nosuch"}, "command /bin/nosuch does not exist in the rootfs"},
		{"command not in PATH", []string{"--", "nosuch"}, `command "nosuch" is not in the rootfs (searched PATH=`},
		{"interpreter missing", []string{"--", "/bin/no-interp"}, "its interpreter /missing/interp does not exist in the rootfs"},
		{"a file mounted on a directory", []string{"--mount", filepath.Join(e.rootfs, "bin", "probe") + ":/srv", "--", "/bin/probe", "pause"}, "is a file but /srv is a directory"},
		{"a source the containers cannot read", []string{"--mount", "/etc/shadow:/etc/not-executable", "--", "/bin/probe", "pause"}, "cannot read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.run(t, d, e.daemonArgs(d, tc.args...)...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("status %d stderr %q; want 2 and one line containing %q", r.code, r.stderr, tc.want)
			}
		})
	}
	assertClean(t, d)
}

func TestPoolMountAndEnv(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	shared := e.userDir(t, "shared")
	if err := os.WriteFile(filepath.Join(shared, "job"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(shared, "job"), e.uid, e.gid)
	envFile := filepath.Join(e.userDir(t, "envdir"), "env")
	os.WriteFile(envFile, []byte("# comment\nFROM_FILE=1\n\nGEARMAN_SERVER=file\n"), 0o644)
	p := e.startDaemon(t, d, e.daemonArgs(d, "--workers", "1", "--mount", shared+":/srv", "--env-file", envFile,
		"--env", "GEARMAN_SERVER=127.0.0.1:4730", "--", "/bin/probe", "cat", "/srv/job")...)
	ev := p.next(t, "output")
	if ev["line"] != "from the host" || ev["stream"] != "stdout" || ev["containerId"] != "mrtd-0" {
		t.Fatalf("output event %v", ev)
	}
	p.stop(t)
	p2 := e.startDaemon(t, d, e.daemonArgs(d, "--workers", "1", "--instance", "ingest", "--env-file", envFile,
		"--env", "GEARMAN_SERVER=127.0.0.1:4730", "--", "/bin/probe", "cat", "/proc/self/environ")...)
	ev = p2.next(t, "output")
	env := ev["line"].(string)
	for _, want := range []string{"FROM_FILE=1", "GEARMAN_SERVER=127.0.0.1:4730", "MRTD_WORKER=0", "MRTD_INSTANCE=ingest"} {
		if !strings.Contains(env, want) {
			t.Errorf("environment %q lacks %s", env, want)
		}
	}
	if strings.Contains(env, "GEARMAN_SERVER=file") {
		t.Errorf("--env does not override --env-file: %q", env)
	}
	p2.stop(t)
	assertClean(t, d)
}

// TestPoolStartFailureBacksOff: a start that fails in runc, which mrtd
// could not foresee (the command was removed from the rootfs after mrtd
// checked it), backs off like a crash and logs runc's reason in one line.
func TestPoolStartFailureBacksOff(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	rootfs := filepath.Join(e.userDir(t, "copy"), "rootfs")
	if out, err := exec.Command("cp", "-a", e.rootfs, rootfs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if err := copyFile(filepath.Join(rootfs, "bin", "probe"), filepath.Join(rootfs, "bin", "going"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := e.startDaemon(t, d, "--runc", e.runc, "--rootfs", rootfs, "--cache-dir", d.cache, "--runtime-dir", d.runtime,
		"--workers", "1", "--backoff-min", "10ms", "--backoff-max", "20ms", "--stop-timeout", "3s", "--", "/bin/going", "fail-unless", "/nonexistent")
	p.next(t, "worker exited")
	if err := os.Remove(filepath.Join(rootfs, "bin", "going")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		ev := p.next(t, "worker failed to start")
		if reason, _ := ev["reason"].(string); !strings.Contains(reason, "/bin/going") || strings.Contains(reason, "\n") {
			t.Fatalf("reason %q: want runc's reason, in one line", reason)
		}
	}
	p.stopCleanly(t, d)
}

func TestPoolEndsWhenRootfsIsGone(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	rootfs := filepath.Join(e.userDir(t, "copy"), "rootfs")
	if out, err := exec.Command("cp", "-a", e.rootfs, rootfs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	p := e.startDaemon(t, d, "--runc", e.runc, "--rootfs", rootfs, "--cache-dir", d.cache, "--runtime-dir", d.runtime,
		"--workers", "2", "--backoff-min", "10ms", "--", "/bin/probe", "pause")
	pids := p.running(t, 2)
	if err := os.RemoveAll(rootfs); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	<-p.done
	err := p.cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("mrtd ended with %v, want exit status 1:\n%s", err, p.log())
	}
	if last := p.lines[len(p.lines)-1]; !strings.HasPrefix(last, "mrtd: ") || !strings.Contains(last, rootfs+" is gone") {
		t.Fatalf("last line %q, want a one-line reason", last)
	}
	if alive(pids[1]) {
		t.Errorf("worker 1 (pid %d) still runs after mrtd exited", pids[1])
	}
	assertClean(t, d)
}

// TestEndToEndPool runs the real bin/mrtd's default command, the demo
// worker of the embedded rootfs, as an unprivileged user.
func TestEndToEndPool(t *testing.T) {
	e := needIntegration(t)
	local := e.realMrtd(t)
	d := e.newDirs(t)
	e2 := *e
	e2.mrtd = local
	p := e2.startDaemon(t, d, "--workers", "2", "--cache-dir", d.cache, "--runtime-dir", d.runtime, "--env", "MRTD_DEMO_INTERVAL=0.1")
	p.running(t, 2)
	p.waitLog(t, "heartbeat 2", 2)
	if code := p.stop(t); code != 0 {
		t.Fatalf("mrtd exited %d:\n%s", code, p.log())
	}
	if n := strings.Count(p.log(), "SIGTERM, stopping"); n != 2 {
		t.Errorf("%d demo workers stopped on SIGTERM, want 2:\n%s", n, p.log())
	}
	assertClean(t, d)
}

// TestPoolSurvivesClosedLog closes the pipe mrtd logs to, as a log reader
// that goes away would: mrtd keeps supervising and still stops cleanly.
func TestPoolSurvivesClosedLog(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	p := e.startDaemon(t, d, e.daemonArgs(d, "--workers", "2", "--", "/bin/probe", "pause")...)
	pids := p.running(t, 2)
	p.ready(t, 2)
	p.stderr.Close()
	<-p.done
	syscall.Kill(pids[0], syscall.SIGKILL) // logs into the closed pipe
	time.Sleep(200 * time.Millisecond)
	if !alive(p.cmd.Process.Pid) {
		t.Fatal("mrtd died when its log pipe closed")
	}
	p.stopCleanly(t, d)
}
