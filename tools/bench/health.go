package main

// The figures of the health checks and of restarts at once (issue 10):
//
//   - restart after a crash, the first failure, with the default flags:
//     SIGKILL of a worker's init until its next "worker running", each
//     sample a worker that had not failed before (a pool of -n plus
//     -warmup workers, each killed once), vs. one `runc run -d` of a
//     deleted container, interleaved;
//   - health checks: the CPU one check costs (mrtd's utime+stime with its
//     children's, which include runc exec and the check; minus the pool's
//     idle CPU), with 16 workers checked every -health-interval over
//     -health-window, vs. the CPU of one raw `runc exec` of the same
//     command; and what checks every 30 s (the default interval) of 16
//     workers cost, in % of a core.
//
// The check is `true` (coreutils, in the default rootfs), the cheapest
// command there is: what is measured is what mrtd and runc add.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

var (
	healthFlag     = flag.Bool("health", true, "measure the health check and first-restart figures (with the pool figures)")
	healthOnly     = flag.Bool("health-only", false, "measure only the health check and first-restart figures")
	healthWindow   = flag.Duration("health-window", 10*time.Second, "`window` over which the health checks' CPU is measured")
	healthInterval = flag.Duration("health-interval", time.Second, "the `interval` of the health checks while their CPU is measured")
)

const (
	// healthWorkers is the pool whose checks are measured.
	healthWorkers = 16
	// healthDefaultInterval is --health-interval's default, which the
	// figure in % of a core is for.
	healthDefaultInterval = 30 * time.Second
)

// healthCheckCmd is the check: argv, as --health-cmd takes a JSON array.
var healthCheckCmd = []string{"true"}

// applyHealthOnly makes -health-only skip every other figure. Call it
// before measuring.
func applyHealthOnly() {
	if *healthOnly {
		*poolOnly, *poolFlag = true, false
	}
}

// healthWanted reports whether the health figures are to be measured.
func healthWanted() bool {
	return *healthOnly || (*healthFlag && *poolFlag && !*imageOnly && !*keepidOnly)
}

// healthFigures measures the first-restart and health check figures.
func (b *bench) healthFigures() ([]row, []resRow, []*samples, error) {
	p, err := b.poolSetup()
	if err != nil {
		return nil, nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: restart after a crash, first failure, default flags, vs. runc run -d (%d runs) ...\n", *n)
	rows, series, err := p.firstRestart()
	if err != nil {
		return nil, nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: health checks of %d workers every %v over %v, vs. runc exec ...\n", healthWorkers, *healthInterval, *healthWindow)
	hRows, res, hSeries, err := p.healthCPU()
	if err != nil {
		return nil, nil, nil, err
	}
	return append(rows, hRows...), res, append(series, hSeries...), nil
}

// firstRestart measures the restart after a worker's first failure with
// mrtd's default flags (no backoff then), against `runc run -d`; and, when
// the --standby figures are wanted, the same in a pool with --standby
// beside it (standby.go), with a raw `runc start` of a created container
// for the breakdown; all interleaved.
func (p *poolBench) firstRestart() ([]row, []*samples, error) {
	size := *n + *warmup
	d, _, err := p.start(size)
	if err != nil {
		return nil, nil, err
	}
	defer p.stop(d)
	var sb *standbyPool
	if standbyWanted() {
		if sb, err = p.startStandby(standbyInstance, size); err != nil {
			return nil, nil, err
		}
		if sb != nil {
			defer p.stop(sb.d)
		}
	}
	bundles, err := p.rawBundles("first-restart", 1, false)
	if err != nil {
		return nil, nil, err
	}
	rb := bundles[0]
	if err := p.runDetached(rb); err != nil {
		return nil, nil, err
	}
	defer p.rawRemove(bundles)

	// Before every sample: neither mrtd is busy after the last one (a
	// runc delete, a standby being created). ready reports whether every
	// standby was ready in time.
	settle := func() (ready bool, err error) {
		if sb == nil {
			return true, nil
		}
		if err := quiet(d, settleTimeout); err != nil {
			return false, err
		}
		if err := sb.settle(settleTimeout); err != nil {
			if errors.Is(err, errInterrupted) {
				return false, err
			}
			return false, nil
		}
		return true, nil
	}
	settled := func(run func() (time.Duration, error)) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			if _, err := settle(); err != nil {
				return 0, err
			}
			return run()
		}
	}
	m := &samples{name: "mrtd: SIGKILL init -> running, 1st failure"}
	f := &samples{name: "runc run -d (deleted before)"}
	s := &samples{name: "mrtd --standby: SIGKILL -> running, 1st"}
	rs := &samples{name: "runc start (runc create before)"}
	next, nextStandby := 0, 0 // the next worker to kill: each fails once
	mSplit, sSplit := newRestartSplit("mrtd"), newRestartSplit("mrtd --standby")
	// counted returns split for a measured sample of worker w: the
	// warm-up rounds kill the first workers.
	counted := func(split *restartSplit, w int) *restartSplit {
		if w < *warmup {
			return nil
		}
		return split
	}
	ss := []series{
		series2(m, settled(func() (time.Duration, error) {
			w := next
			next++
			return p.killWorker(d, w, counted(&mSplit, w))
		})),
		series2(f, settled(p.rawRunDetached(bundles, rb))),
	}
	if sb != nil {
		ss = append(ss,
			series2(s, func() (time.Duration, error) {
				w := nextStandby
				nextStandby++
				split := counted(&sSplit, w)
				ready, err := settle()
				if err != nil {
					return 0, err
				}
				if !ready && split != nil {
					sb.late++
				}
				return sb.kill(w, split)
			}),
			series2(rs, settled(p.rawStartCreated(bundles, rb))),
		)
	}
	if err := interleave(*warmup, *n, ss...); err != nil {
		return nil, nil, err
	}
	// Each kill was its worker's first failure: no backoff logged.
	daemons := []*mrtdtest.Daemon{d}
	if sb != nil {
		daemons = append(daemons, sb.d)
	}
	for _, dm := range daemons {
		for w, b := range dm.Snapshot().Backoff {
			if b != 0 {
				return nil, nil, fmt.Errorf("worker %d backed off %v after its first failure, want no delay", w, b)
			}
		}
	}
	i := p.i11()
	i.restartPlain, i.restartFloor, i.restartPlainSplit = m, f, mSplit
	rows := []row{{
		figure: "restart after a crash (1st failure), default flags", value: m.median(),
		floor: f.median(), floorWhat: "runc run -d",
		target: 1.3, targetText: "<= 1.3x",
	}}
	series := []*samples{m, f, mSplit.reaped, mSplit.started}
	if sb != nil {
		i.restartStandby, i.runcStart, i.restartStandbySplit = s, rs, sSplit
		i.standbyMissed, i.standbyLate = sb.missed, sb.late
		rows = append(rows, row{
			figure: "restart with --standby (1st failure)", value: s.median(),
			floor: f.median(), floorWhat: "runc run -d",
			target: 0.3, targetText: "<= 0.3x",
		})
		series = append(series, s, rs, sSplit.reaped, sSplit.started)
	}
	return rows, series, nil
}

// restartSplit is where a restart's time goes, by mrtd's log: from the
// kill until mrtd logged the exit (it reaped the init), and from then
// until it logged the replacement running.
type restartSplit struct {
	reaped, started *samples
}

func newRestartSplit(what string) restartSplit {
	return restartSplit{
		reaped:  &samples{name: what + ": kill -> 'exited'"},
		started: &samples{name: what + ": 'exited' -> running"},
	}
}

// killWorker kills the init of d's worker w with SIGKILL and returns the
// time until its next "worker running" event. With split, it adds the
// sample's parts to it.
func (p *poolBench) killWorker(d *mrtdtest.Daemon, w int, split *restartSplit) (time.Duration, error) {
	if stopping.Load() {
		return 0, errInterrupted
	}
	st := d.Snapshot()
	pid, ok := st.Pids[w]
	if !ok {
		return 0, fmt.Errorf("mrtd's worker %d is not running", w)
	}
	restarts := st.Restarts[w]
	start := time.Now()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		return 0, fmt.Errorf("killing worker %d's init %d: %w", w, pid, err)
	}
	at, err := d.WaitFor(30*time.Second, func(s *mrtdtest.State) bool {
		_, up := s.Pids[w]
		return up && s.Restarts[w] > restarts
	})
	if err != nil {
		return 0, fmt.Errorf("waiting for worker %d to run again: %w", w, err)
	}
	if split != nil {
		if ex, ok := p.logTimesOf(d).last("worker exited", w); ok && ex.After(start) && !ex.After(at) {
			split.reaped.add(ex.Sub(start))
			split.started.add(at.Sub(ex))
		}
	}
	return at.Sub(start), nil
}

// logWatch follows mrtd's log (mrtdtest's CopyTo, a line at a time): it
// counts "worker healthy" lines and keeps the metrics address.
type logWatch struct {
	healthy atomic.Int64
	addr    atomic.Value // string
}

func (w *logWatch) Write(line []byte) (int, error) {
	var ev struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal(line, &ev) == nil {
		switch ev.Msg {
		case "worker healthy":
			w.healthy.Add(1)
		case "serving metrics":
			w.addr.Store(ev.Addr)
		}
	}
	return len(line), nil
}

// healthCounts scrapes mrtd's metrics at addr and returns its health
// checks and failed checks, summed over the workers.
func healthCounts(addr string) (checks, failures int64, err error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(body)) {
		name, rest, _ := strings.Cut(line, "{")
		_, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch name {
		case "mrtd_worker_health_checks_total":
			checks += int64(v)
		case "mrtd_worker_health_check_failures_total":
			failures += int64(v)
		}
	}
	return checks, failures, nil
}

// cpuTicks is a process's own CPU time (utime+stime of /proc/PID/stat)
// and that of the children it waited for (cutime+cstime), in clock ticks.
func cpuTicks(pid int) (self, children uint64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[end+1:]))
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var v [4]uint64
	for i, s := range f[11:15] { // fields 14 to 17
		if v[i], err = strconv.ParseUint(s, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: %v", pid, err)
		}
	}
	return v[0] + v[1], v[2] + v[3], nil
}

// poolCPUResult is what a pool cost over a window.
type poolCPUResult struct {
	self, children time.Duration // mrtd's own CPU, and its reaped children's
	checks         int64
	wall           time.Duration
}

func (r poolCPUResult) total() time.Duration { return r.self + r.children }

// poolCPU runs a pool of healthWorkers, with extra flags, and returns its
// CPU (mrtd's own, and that of the children it reaped: runc, and what runc
// reaped) over -health-window and how many health checks it logged
// meanwhile.
func (p *poolBench) poolCPU(extra ...string) (poolCPUResult, error) {
	var r poolCPUResult
	watch := &logWatch{}
	cmd := mrtdtest.Command(p.mrtd, p.args(healthWorkers, append(extra, "--metrics-addr", "127.0.0.1:0")...)...)
	if *verbose {
		fmt.Fprintf(os.Stderr, "+ %s\n", strings.Join(cmd.Args, " "))
	}
	d, err := mrtdtest.Start(cmd, mrtdtest.Options{CopyTo: watch})
	if err != nil {
		return r, err
	}
	p.mu.Lock()
	p.daemons[d] = true
	p.mu.Unlock()
	defer p.stop(d)
	if _, err := d.WaitFor(startTimeout, func(s *mrtdtest.State) bool { return s.Running() == healthWorkers }); err != nil {
		return r, fmt.Errorf("waiting for %d workers to run: %w", healthWorkers, err)
	}
	// Settle: the starts' runc processes reaped, and, with checks, every
	// worker healthy.
	time.Sleep(2 * time.Second)
	if len(extra) > 0 {
		for deadline := time.Now().Add(time.Minute); watch.healthy.Load() < healthWorkers; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) || stopping.Load() {
				return r, fmt.Errorf("%d of %d workers healthy after a minute", watch.healthy.Load(), healthWorkers)
			}
		}
	}
	addr, _ := watch.addr.Load().(string)
	if addr == "" {
		return r, errors.New("mrtd logged no metrics address")
	}
	checks0, _, err := healthCounts(addr)
	if err != nil {
		return r, err
	}
	self0, children0, err := cpuTicks(d.Pid)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	for deadline := t0.Add(*healthWindow); time.Now().Before(deadline); {
		if stopping.Load() {
			return r, errInterrupted
		}
		time.Sleep(min(200*time.Millisecond, time.Until(deadline)))
	}
	self1, children1, err := cpuTicks(d.Pid)
	if err != nil {
		return r, err
	}
	r.wall = time.Since(t0)
	checks1, failed, err := healthCounts(addr)
	if err != nil {
		return r, err
	}
	if failed > 0 {
		return r, fmt.Errorf("%d health checks failed", failed)
	}
	r.checks = checks1 - checks0
	tick := time.Second / mrtdtest.ClockTicks
	r.self, r.children = time.Duration(self1-self0)*tick, time.Duration(children1-children0)*tick
	return r, nil
}

// healthCPU measures what a health check costs mrtd, against a raw `runc
// exec` of the same command.
func (p *poolBench) healthCPU() ([]row, []resRow, []*samples, error) {
	cmdJSON := `["` + strings.Join(healthCheckCmd, `", "`) + `"]`
	idle, err := p.poolCPU()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the pool without health checks: %w", err)
	}
	busy, err := p.poolCPU("--health-cmd", cmdJSON, "--health-interval", healthInterval.String())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the pool with health checks: %w", err)
	}
	if busy.checks == 0 {
		return nil, nil, nil, errors.New("no health check ran in the window")
	}
	// What the pool costs without checks, over the same time.
	scale := float64(busy.wall) / float64(idle.wall)
	idleSelf := time.Duration(float64(idle.self) * scale)
	idleTotal := time.Duration(float64(idle.total()) * scale)
	perCheck := (busy.total() - idleTotal) / time.Duration(busy.checks)
	perCheckSelf := (busy.self - idleSelf) / time.Duration(busy.checks)
	pct := func(d time.Duration) float64 {
		return 100 * float64(d) * healthWorkers / float64(healthDefaultInterval)
	}

	// The floor: the CPU of one raw runc exec (with runc init and the
	// command, which it waits for), in a raw container.
	bundles, err := p.rawBundles("health", 1, false)
	if err != nil {
		return nil, nil, nil, err
	}
	rb := bundles[0]
	if err := p.runDetached(rb); err != nil {
		return nil, nil, nil, err
	}
	defer p.rawRemove(bundles)
	f := &samples{name: "runc exec " + strings.Join(healthCheckCmd, " ") + ": CPU"}
	for i := range *warmup + *n {
		if stopping.Load() {
			return nil, nil, nil, errInterrupted
		}
		cmd := p.runcCmd(rb, append([]string{"exec", rb.id}, healthCheckCmd...)...)
		if err := p.runcErr(rb, "exec", cmd.Run()); err != nil {
			return nil, nil, nil, err
		}
		if i >= *warmup {
			f.add(cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime())
		}
	}
	m := &samples{name: "mrtd: CPU per health check"}
	m.add(perCheck)
	rows := []row{{
		figure: "health check CPU", value: perCheck,
		floor: f.median(), floorWhat: "runc exec CPU",
		target: 0, targetText: "(info)",
	}}
	res := []resRow{{
		figure: fmt.Sprintf("health checks every %v, %d workers", healthDefaultInterval, healthWorkers),
		value:  fmt.Sprintf("%.2f%% of a core", pct(perCheck)), target: "< 1%", over: pct(perCheck) >= 1,
		detail: fmt.Sprintf("%d checks every %v over %.1fs cost %v of CPU (%v mrtd's own, the rest runc's and the checks'), %v without checks: %.1f ms a check, %.1f ms of it mrtd's (%.2f%% of a core); a raw runc exec alone %.1f ms (%.2f%% of a core)",
			busy.checks, *healthInterval, busy.wall.Seconds(), busy.total().Round(time.Millisecond), busy.self.Round(time.Millisecond),
			idleTotal.Round(time.Millisecond), ms1(perCheck), ms1(perCheckSelf), pct(perCheckSelf), ms1(f.median()), pct(f.median())),
	}}
	return rows, res, []*samples{m, f}, nil
}

// ms1 is d in milliseconds.
func ms1(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
