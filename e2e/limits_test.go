package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// workerOutput runs a pool of two workers that print the file path once
// and exit 0, which --restart on-failure leaves stopped (logged at debug
// level), and returns each worker's lines.
func workerOutput(t *testing.T, e *mrtdtest.Env, d mrtdtest.Dirs, path string, args ...string) map[int][]string {
	t.Helper()
	args = append(args, "--workers", "2", "--restart", "on-failure", "--log-level", "debug", "--", "/bin/probe", "cat", path)
	p := e.StartDaemon(t, d, e.DaemonArgs(d, args...)...)
	lines := map[int][]string{}
	for stopped := 0; stopped < 2; {
		ev := p.NextOf(t, "output", "worker stopped")
		if ev["msg"] == "worker stopped" {
			stopped++
			continue
		}
		w := int(ev["worker"].(float64))
		lines[w] = append(lines[w], ev["line"].(string))
	}
	p.StopCleanly(t, d)
	return lines
}

// statNice is the nice field of a /proc/PID/stat line (the 19th; the
// command name, in parentheses, may hold spaces).
func statNice(t *testing.T, stat string) string {
	t.Helper()
	_, rest, ok := strings.Cut(stat, ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 17 {
		t.Fatalf("not a stat line: %q", stat)
	}
	return f[16] // field 19; rest starts at field 3
}

// TestLimitsInWorker: --ulimit, --nice and --oom-score-adj show in each
// worker's /proc/self, and a [worker.1] section's own values in worker
// 1's, while worker 0 keeps the pool's. None needs cgroups: it works here,
// rootless.
func TestLimitsInWorker(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	conf := filepath.Join(e.UserDir(t, "conf"), "config.toml")
	if err := os.WriteFile(conf, []byte("[worker.1]\nulimit = [\"nofile=32:64\", \"msgqueue=1024:2048\"]\nnice = 10\noom-score-adj = 600\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pool := []string{"--config", conf, "--ulimit", "nofile=64:128", "--ulimit", "locks=10:20", "--ulimit", "msgqueue=4096:8192", "--nice", "5", "--oom-score-adj", "500"}

	limits := workerOutput(t, e, d, "/proc/self/limits", pool...)
	row := func(w int, name string) string {
		for _, l := range limits[w] {
			if strings.HasPrefix(l, name) {
				return strings.Join(strings.Fields(strings.TrimPrefix(l, name)), " ")
			}
		}
		t.Fatalf("worker %d: no %q in %q", w, name, limits[w])
		return ""
	}
	for _, c := range []struct {
		w          int
		name, want string
	}{
		// The probe, a Go program, raises its soft RLIMIT_NOFILE at start
		// (as Go does since 1.19): the soft value is checked on another
		// rlimit.
		{0, "Max open files", "128 files"},
		{1, "Max open files", "64 files"},
		{0, "Max file locks", "10 20 locks"},
		{1, "Max file locks", "10 20 locks"}, // the pool's, kept
		{0, "Max msgqueue size", "4096 8192 bytes"},
		{1, "Max msgqueue size", "1024 2048 bytes"},
	} {
		got := row(c.w, c.name)
		if c.name == "Max open files" {
			got = got[strings.Index(got, " ")+1:] // the hard limit
		}
		if got != c.want {
			t.Errorf("worker %d %s: %q, want %q", c.w, c.name, got, c.want)
		}
	}

	stat := workerOutput(t, e, d, "/proc/self/stat", pool...)
	oom := workerOutput(t, e, d, "/proc/self/oom_score_adj", pool...)
	for w, want := range map[int][2]string{0: {"5", "500"}, 1: {"10", "600"}} {
		if len(stat[w]) != 1 || statNice(t, stat[w][0]) != want[0] {
			t.Errorf("worker %d: stat %q, want nice %s", w, stat[w], want[0])
		}
		if len(oom[w]) != 1 || oom[w][0] != want[1] {
			t.Errorf("worker %d: oom_score_adj %q, want %s", w, oom[w], want[1])
		}
	}
}

// TestLimitsBadInput: what mrtd cannot grant is exit 2 and one line before
// anything starts, naming the flag, the value and the fix. Without a
// delegated cgroup v2 subtree (here: cgroup v1, or no systemd), --memory
// names what is missing.
func TestLimitsBadInput(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	var nofile unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	nice := 20 - prio // what mrtd inherits
	oomb, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	oom, _ := strconv.Atoi(strings.TrimSpace(string(oomb)))
	conf := filepath.Join(e.UserDir(t, "conf"), "config.toml")
	os.WriteFile(conf, []byte("[worker.1]\n\nnice = 40\n"), 0o644)

	pool := func(args ...string) []string {
		return e.DaemonArgs(d, append(args, "--", "/bin/probe", "pause")...)
	}
	run := func(args ...string) []string {
		return e.RunArgs(d, append(args, "--", "/bin/probe", "echo", "hi")...)
	}
	type tc struct {
		name string
		args []string
		want []string // one of them
	}
	cases := []tc{
		{"unknown rlimit", pool("--ulimit", "files=10"), []string{`--ulimit "files=10": unknown rlimit "files": use one of as, core,`}},
		{"soft above hard", run("--ulimit", "nofile=128:64"), []string{`--ulimit "nofile=128:64": the soft limit 128 is above the hard limit 64`}},
		{"nice out of range", pool("--nice", "20"), []string{`--nice "20": use a whole number from -20`}},
		{"worker nice out of range", pool("--config", conf), []string{"config file " + conf + ` line 3: [worker.1] nice "40"`}},
		{"memory too small", pool("--memory", "1M"), []string{`--memory "1M" is below 6M`}},
		{"nice below mrtd's", run("--nice", strconv.Itoa(nice-1)), []string{fmt.Sprintf("--nice %d is below mrtd's own nice value (%d)", nice-1, nice)}},
		{"memory without delegation", pool("--memory", "512M"), []string{"--memory 512M cannot be applied: cgroup v1 here", "--memory 512M cannot be applied: not delegated", "--memory 512M cannot be applied: controller memory not enabled"}},
		{"memory without delegation, mrtd run", run("--memory", "512M", "--pids-limit", "10"), []string{"--memory 512M and --pids-limit 10 cannot be applied: "}},
	}
	if e.Dropped || os.Geteuid() != 0 {
		// mrtd runs unprivileged: no CAP_SYS_RESOURCE.
		cases = append(cases, tc{"oom below mrtd's", pool("--oom-score-adj", strconv.Itoa(oom-1)),
			[]string{fmt.Sprintf("--oom-score-adj %d is below mrtd's own OOM score adjustment (%d): lowering it needs CAP_SYS_RESOURCE", oom-1, oom)}})
		if nofile.Max != unix.RLIM_INFINITY && nofile.Max < 1<<20 {
			v := fmt.Sprintf("nofile=64:%d", nofile.Max+1)
			cases = append(cases, tc{"hard limit above mrtd's", pool("--ulimit", v),
				[]string{fmt.Sprintf("--ulimit %s: the hard limit %d is above mrtd's own (%d)", v, nofile.Max+1, nofile.Max)}})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.Run(t, d, c.args...)
			lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
			found := false
			for _, w := range c.want {
				found = found || len(lines) == 1 && strings.Contains(lines[0], w)
			}
			if strings.HasPrefix(c.name, "memory without delegation") && r.Code == 0 && !e.Dropped {
				// Run by a normal user, the tests may sit in a
				// delegated subtree; uid 65534 never does.
				t.Skip("this host delegates a cgroup v2 subtree to the tests' user")
			}
			if r.Code != 2 || !found {
				t.Fatalf("status %d stderr %q; want 2 and one line containing one of %q", r.Code, r.Stderr, c.want)
			}
		})
	}
	mrtdtest.AssertClean(t, d)
}

// TestLimitsRootCgroups: mrtd run by root makes the containers' cgroups
// itself through runc, on cgroup v1 or v2: --memory, --cpus and
// --pids-limit show in the worker's cgroup. (A normal user's delegated
// subtree cannot be tested here: it needs cgroup v2 and systemd.)
func TestLimitsRootCgroups(t *testing.T) {
	e := needIntegration(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := e.AsRoot()
	d := mrtdtest.Dirs{Cache: root.UserDir(t, "rootcache"), Runtime: root.UserDir(t, "rootrun"), Home: root.UserDir(t, "roothome")}
	p := root.StartDaemon(t, d, root.DaemonArgs(d, "--workers", "1", "--memory", "64M", "--cpus", "0.5", "--pids-limit", "50", "--", "/bin/probe", "pause")...)
	pid := p.Running(t, 1)[0]
	p.Ready(t, 1)
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The file of a controller: under its v1 hierarchy, else v2's.
	file := func(ctrl, v1, v2 string) string {
		var unified string
		for _, l := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
			f := strings.SplitN(l, ":", 3)
			if len(f) != 3 {
				continue
			}
			if f[0] == "0" {
				unified = f[2]
			}
			for _, c := range strings.Split(f[1], ",") {
				if c == ctrl {
					return filepath.Join("/sys/fs/cgroup", ctrl, f[2], v1)
				}
			}
		}
		return filepath.Join("/sys/fs/cgroup", unified, v2)
	}
	for _, c := range []struct {
		ctrl, v1, v2 string
		want         []string
	}{
		{"memory", "memory.limit_in_bytes", "memory.max", []string{"67108864"}},
		{"cpu", "cpu.cfs_quota_us", "cpu.max", []string{"50000", "50000 100000"}},
		{"pids", "pids.max", "pids.max", []string{"50"}},
	} {
		f := file(c.ctrl, c.v1, c.v2)
		b, err := os.ReadFile(f)
		got := strings.TrimSpace(string(b))
		if err != nil || !slices.Contains(c.want, got) {
			t.Errorf("%s: %q, %v; want one of %q (cgroups %s)", f, got, err, c.want, cg)
		}
	}
	p.StopCleanly(t, d)
	if _, err := os.Stat(file("memory", "", "")); err == nil {
		t.Errorf("the worker's cgroup %s is left after mrtd stopped", file("memory", "", ""))
	}
}

// TestLimitsReload: a reload that changes one worker's [worker.N] nice
// restarts that worker alone, with the new value; one that asks for what
// mrtd cannot grant is logged and changes nothing.
func TestLimitsReload(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	conf := filepath.Join(e.UserDir(t, "conf"), "config.toml")
	write := func(worker1 string) {
		t.Helper()
		body := "workers = 2\nnice = 5\ncommand = [\"/bin/probe\", \"pause\"]\n[worker.1]\nnice = " + worker1 + "\n"
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	niceOf := func(pid int) string {
		t.Helper()
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		return statNice(t, string(b))
	}
	write("10")
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--config", conf)...)
	pids := p.Running(t, 2)
	p.Ready(t, 2)
	if n0, n1 := niceOf(pids[0]), niceOf(pids[1]); n0 != "5" || n1 != "10" {
		t.Fatalf("nice %s and %s, want 5 and 10", n0, n1)
	}

	write("12")
	p.Signal(syscall.SIGHUP)
	if ev := p.Next(t, "reloaded"); ev["restarted"] != "[1]" {
		t.Fatalf("reload event %v, want worker 1 alone restarted", ev)
	}
	ev := p.Next(t, "worker running")
	if w := int(ev["worker"].(float64)); w != 1 {
		t.Fatalf("worker %d started after the reload, want 1", w)
	}
	p.Ready(t, 3)
	if n := niceOf(int(ev["pid"].(float64))); n != "12" {
		t.Errorf("worker 1's nice after the reload: %s, want 12", n)
	}
	if n := niceOf(pids[0]); n != "5" {
		t.Errorf("worker 0 (pid %d) nice %s after the reload, want it untouched at 5", pids[0], n)
	}

	write("-5")
	p.Signal(syscall.SIGHUP)
	if ev := p.Next(t, "reload failed; the running configuration stays"); !strings.Contains(fmt.Sprint(ev["error"]), "[worker.1] nice -5 is below mrtd's own nice value") {
		t.Fatalf("failed reload event %v", ev)
	}
	p.StopCleanly(t, d)
}
