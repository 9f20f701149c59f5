package main

// The pool figures: `mrtd --workers N` against raw `runc run -d`.
//
//   - pool start, N = 1, 4, 16, 64: from launching mrtd until N "worker
//     running" events were logged, vs. N raw `runc run -d` started all at
//     once, each with its own bundle (the config.json mrtd writes) and the
//     same runc flags as mrtd (--log, --log-format json, --pid-file);
//   - restart: SIGKILL of a worker's init until its next "worker running"
//     (backoff 1ms), vs. one `runc run -d` of a deleted container (floor 1)
//     and vs. `runc delete --force` of a running one then `runc run -d`
//     (floor 2); the same again without seccomp, for information;
//   - memory: mrtd's PSS with 64 workers minus with 1, per worker; runc
//     processes resident while workers run;
//   - idle CPU: mrtd's utime+stime over -idle with 16 idle workers.
//
// Workers run `sleep infinity` (coreutils, in the default rootfs). mrtd is
// stopped with SIGTERM after each round; its stop signal is KILL, since
// sleep, as a container's pid 1, ignores SIGTERM.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// poolCommand is every worker's command, in mrtd's pool and in the floor.
var poolCommand = []string{"sleep", "infinity"}

const (
	poolInstance = "bench-pool"
	// startTimeout bounds a pool start, and stopTimeout mrtd's exit after
	// SIGTERM.
	startTimeout = 2 * time.Minute
	stopTimeout  = 30 * time.Second
)

// poolBench is the state the pool figures share.
type poolBench struct {
	*bench
	dir      string
	cache    string // mrtd's --cache-dir, warmed once
	runtime  string // mrtd's --runtime-dir
	rootfs   string // the tree mrtd uses from cache
	runcPool string // the runc binary mrtd uses from cache
	rawState string // runc --root of the floors
	rawDir   string // the floors' bundles
	// wrap, when set, prepares every mrtd command before it starts (the
	// keep-id figures' wrapper, keepid.go).
	wrap func(*exec.Cmd)

	mu      sync.Mutex
	daemons map[*mrtdtest.Daemon]bool // running mrtds, stopped at cleanup
	logs    map[*mrtdtest.Daemon]*logTimes
}

// logTimes records when bench read lines of an mrtd's log (mrtdtest's
// CopyTo, a line at a time, as it reads them): the last of each message,
// by worker (-1 for a line of no worker).
type logTimes struct {
	mu sync.Mutex
	at map[logKey]time.Time
}

type logKey struct {
	msg    string
	worker int
}

func (l *logTimes) Write(line []byte) (int, error) {
	now := time.Now()
	var e struct {
		Msg    string `json:"msg"`
		Worker *int   `json:"worker"`
	}
	if json.Unmarshal(line, &e) == nil && e.Msg != "" {
		k := logKey{e.Msg, -1}
		if e.Worker != nil {
			k.worker = *e.Worker
		}
		l.mu.Lock()
		if l.at == nil {
			l.at = map[logKey]time.Time{}
		}
		l.at[k] = now
		l.mu.Unlock()
	}
	return len(line), nil
}

// last returns when the last line msg of worker (-1: of none) was read.
func (l *logTimes) last(msg string, worker int) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.at[logKey{msg, worker}]
	return t, ok
}

// logTimesOf returns the log times of d, started by p.
func (p *poolBench) logTimesOf(d *mrtdtest.Daemon) *logTimes {
	p.mu.Lock()
	defer p.mu.Unlock()
	if lt := p.logs[d]; lt != nil {
		return lt
	}
	return &logTimes{}
}

// resRow is one line of the pool resources table.
type resRow struct {
	figure, value, target, detail string
	over                          bool
}

// poolFigures measures the pool and returns the ratio rows, the resource
// rows and the series.
func (b *bench) poolFigures() ([]row, []resRow, []*samples, error) {
	p, err := b.poolSetup()
	if err != nil {
		return nil, nil, nil, err
	}

	// 1. Pool start.
	rows, series, err := p.startFigures([]int{1, 4, 16, 64})
	if err != nil {
		return nil, nil, nil, err
	}

	// 2. Restart latency.
	for _, unconfined := range []bool{false, true} {
		what := ""
		if unconfined {
			what = ", no seccomp"
		}
		fmt.Fprintf(os.Stderr, "bench: restart after SIGKILL vs. runc run -d, and vs. runc delete --force + run -d%s (%d runs) ...\n", what, *n)
		restartRows, restartSeries, err := p.restart(unconfined)
		if err != nil {
			return nil, nil, nil, err
		}
		rows = append(rows, restartRows...)
		series = append(series, restartSeries...)
	}

	// 3. Memory, and no resident runc.
	fmt.Fprintln(os.Stderr, "bench: pool memory, 1 vs. 64 workers ...")
	var res []resRow
	memRows, err := p.memory()
	if err != nil {
		return nil, nil, nil, err
	}
	res = append(res, memRows...)

	// 4. Idle CPU.
	fmt.Fprintf(os.Stderr, "bench: idle CPU of mrtd with 16 workers over %v ...\n", *idleWindow)
	cpuRows, err := p.idleCPU(16)
	if err != nil {
		return nil, nil, nil, err
	}
	res = append(res, cpuRows...)

	res = append(res, p.checkClean())
	return rows, res, series, nil
}

// poolSetup makes the pool figures' directories and warms their cache
// with one unmeasured pool, once: the pool, health, standby and issue 11
// figures share it.
func (b *bench) poolSetup() (*poolBench, error) {
	if b.pool != nil {
		return b.pool, nil
	}
	p := &poolBench{bench: b, daemons: map[*mrtdtest.Daemon]bool{}}
	b.pool = p
	p.dir = filepath.Join(b.tmp, "pool")
	p.cache = filepath.Join(p.dir, "cache")
	p.runtime = filepath.Join(p.dir, "run")
	p.rawState = filepath.Join(p.dir, "raw-state")
	p.rawDir = filepath.Join(p.dir, "raw-bundles")
	for _, d := range []string{p.dir, p.rawDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(p.rawState, 0o700); err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "bench: pool: warming its cache ...")
	if _, err := p.mrtdStart(1); err != nil {
		return nil, fmt.Errorf("first pool (extracting the rootfs into %s): %w", p.cache, err)
	}
	var err error
	if p.rootfs, err = onlyTree(filepath.Join(p.cache, "rootfs")); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(p.cache)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "runc-") && !strings.HasSuffix(e.Name(), ".lock") {
			p.runcPool = filepath.Join(p.cache, e.Name())
		}
	}
	return p, nil
}

// startFigures measures the start of pools of each size against as many
// raw `runc run -d` at once, interleaved.
func (p *poolBench) startFigures(sizes []int) ([]row, []*samples, error) {
	var rows []row
	var series []*samples
	for _, size := range sizes {
		reps := *n
		switch {
		case size >= 64:
			reps = min(reps, 3)
		case size >= 16:
			reps = min(reps, 10)
		}
		fmt.Fprintf(os.Stderr, "bench: pool start, %d worker%s vs. %d x runc run -d at once (%d runs) ...\n", size, plural(size), size, reps)
		bundles, err := p.rawBundles(fmt.Sprintf("start%d", size), size, false)
		if err != nil {
			return nil, nil, err
		}
		m := &samples{name: fmt.Sprintf("mrtd --workers %d: all running", size)}
		r := &samples{name: fmt.Sprintf("%d x runc run -d, at once", size)}
		// Where the time goes: mrtd's setup until it logs that it
		// starts the workers; the CPU of mrtd itself and of the runc
		// processes it reaped by the time all run, and the floor's.
		split := startSplit{
			setup:    &samples{name: fmt.Sprintf("mrtd --workers %d: 'starting workers'", size)},
			self:     &samples{name: fmt.Sprintf("mrtd --workers %d: its own CPU", size)},
			children: &samples{name: fmt.Sprintf("mrtd --workers %d: its runc's CPU", size)},
			floorCPU: &samples{name: fmt.Sprintf("%d x runc run -d: CPU", size)},
		}
		measured, floorMeasured := -1, -1 // the first round is a warm-up
		err = interleave(1, reps,
			series2(m, func() (time.Duration, error) {
				measured++
				d, t, err := p.start(size)
				if err != nil {
					return 0, err
				}
				self, selfErr := threadsCPU(d.Pid)
				_, kids, kidsErr := cpuTicks(d.Pid)
				if measured > 0 {
					if at, ok := p.logTimesOf(d).last("starting workers", -1); ok {
						split.setup.add(at.Sub(d.Started))
					}
					if selfErr == nil && kidsErr == nil {
						split.self.add(self)
						split.children.add(time.Duration(kids) * (time.Second / mrtdtest.ClockTicks))
					}
				}
				return t, p.stop(d)
			}),
			series2(r, func() (time.Duration, error) {
				floorMeasured++
				cpu := split.floorCPU
				if floorMeasured == 0 {
					cpu = nil
				}
				return p.rawStart(bundles, cpu)
			}),
		)
		if err != nil {
			return nil, nil, err
		}
		series = append(series, m, r, split.setup, split.self, split.children, split.floorCPU)
		p.i11().start[size] = [2]*samples{m, r}
		p.i11().startSplit[size] = split
		rows = append(rows, row{
			figure: fmt.Sprintf("pool start, %d worker%s", size, plural(size)), value: m.median(),
			floor: r.median(), floorWhat: fmt.Sprintf("%d x runc run -d", size),
			target: 1.15, targetText: "<= 1.15x",
		})
	}
	return rows, series, nil
}

// args returns mrtd's arguments for a pool of size workers, instance
// poolInstance.
func (p *poolBench) args(size int, extra ...string) []string {
	return p.instanceArgs(poolInstance, size, extra...)
}

// instanceArgs returns mrtd's arguments for a pool of size workers named
// instance: pools running side by side share the cache and runtime dir,
// not the instance.
func (p *poolBench) instanceArgs(instance string, size int, extra ...string) []string {
	a := []string{
		"--workers", strconv.Itoa(size), "--instance", instance,
		"--cache-dir", p.cache, "--runtime-dir", p.runtime,
		"--stop-signal", "KILL",
	}
	a = append(a, extra...)
	return append(append(a, "--"), poolCommand...)
}

// start starts mrtd and waits until size workers run. It returns the
// daemon and the time from launch until the last "worker running" event.
func (p *poolBench) start(size int, extra ...string) (*mrtdtest.Daemon, time.Duration, error) {
	return p.startInstance(poolInstance, size, extra...)
}

// startInstance is start for the pool named instance.
func (p *poolBench) startInstance(instance string, size int, extra ...string) (*mrtdtest.Daemon, time.Duration, error) {
	if stopping.Load() {
		return nil, 0, errInterrupted
	}
	cmd := mrtdtest.Command(p.mrtd, p.instanceArgs(instance, size, extra...)...)
	if p.wrap != nil {
		p.wrap(cmd)
	}
	if *verbose {
		fmt.Fprintf(os.Stderr, "+ %s\n", strings.Join(cmd.Args, " "))
	}
	lt := &logTimes{}
	d, err := mrtdtest.Start(cmd, mrtdtest.Options{CopyTo: lt})
	if err != nil {
		return nil, 0, err
	}
	p.mu.Lock()
	p.daemons[d] = true
	if p.logs == nil {
		p.logs = map[*mrtdtest.Daemon]*logTimes{}
	}
	p.logs[d] = lt
	p.mu.Unlock()
	at, err := d.WaitFor(startTimeout, func(s *mrtdtest.State) bool { return s.Running() == size })
	if err != nil {
		p.stop(d)
		return nil, 0, fmt.Errorf("mrtd --workers %d: waiting for every worker to run: %w", size, err)
	}
	return d, at.Sub(d.Started), nil
}

// stop stops mrtd with SIGTERM and checks that it exited 0.
func (p *poolBench) stop(d *mrtdtest.Daemon) error {
	err := d.Stop(stopTimeout)
	p.mu.Lock()
	delete(p.daemons, d)
	delete(p.logs, d)
	p.mu.Unlock()
	if err != nil {
		st := d.Snapshot()
		return fmt.Errorf("stopping mrtd: %v %s", err, strings.Join(st.Problems, "; "))
	}
	return nil
}

// stopAll stops every mrtd still running (after an error or an interrupt).
func (p *poolBench) stopAll() {
	p.mu.Lock()
	ds := make([]*mrtdtest.Daemon, 0, len(p.daemons))
	for d := range p.daemons {
		ds = append(ds, d)
	}
	p.mu.Unlock()
	for _, d := range ds {
		if err := p.stop(d); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
	}
}

// mrtdStart times one pool start, then stops the pool.
func (p *poolBench) mrtdStart(size int) (time.Duration, error) {
	d, t, err := p.start(size)
	if err != nil {
		return 0, err
	}
	return t, p.stop(d)
}

// rawBundle is one floor container.
type rawBundle struct {
	id, dir string
}

// rawBundles writes size bundles with the config.json mrtd writes for
// worker i of the pool (container.Spec with the same options).
func (p *poolBench) rawBundles(prefix string, size int, unconfined bool) ([]rawBundle, error) {
	var out []rawBundle
	for i := range size {
		id := fmt.Sprintf("bench-raw-%s-%d", prefix, i)
		spec, err := container.Spec(id, container.Options{
			Rootfs:   p.rootfs,
			Args:     poolCommand,
			Env:      []string{"MRTD_WORKER=" + strconv.Itoa(i), "MRTD_INSTANCE=" + poolInstance},
			Hostname: id,
			UID:      p.uid,
			GID:      p.gid,
			Network:  config.NetworkHost,
			NoFile:   p.nofile,

			SeccompUnconfined: unconfined,
		})
		if err != nil {
			return nil, err
		}
		data, err := json.Marshal(spec)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(p.rawDir, id)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
			return nil, err
		}
		out = append(out, rawBundle{id: id, dir: dir})
	}
	return out, nil
}

// runcCmd is runc with the global flags mrtd passes (go-runc's).
func (p *poolBench) runcCmd(rb rawBundle, args ...string) *exec.Cmd {
	a := append([]string{"--root", p.rawState, "--log", filepath.Join(rb.dir, "runc.log"), "--log-format", "json"}, args...)
	if *verbose {
		fmt.Fprintf(os.Stderr, "+ %s %s\n", p.runc, strings.Join(a, " "))
	}
	cmd := exec.Command(p.runc, a...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// runDetached is the floor's `runc run -d`, stdio on /dev/null.
func (p *poolBench) runDetached(rb rawBundle) error {
	os.Remove(filepath.Join(rb.dir, "pid"))
	cmd := p.runcCmd(rb, "run", "-d", "--pid-file", filepath.Join(rb.dir, "pid"), "--bundle", rb.dir, rb.id)
	return p.runcErr(rb, "run -d", cmd.Run())
}

func (p *poolBench) runcErr(rb rawBundle, what string, err error) error {
	if err == nil {
		return nil
	}
	log, _ := os.ReadFile(filepath.Join(rb.dir, "runc.log"))
	return fmt.Errorf("runc %s %s: %v\n%s", what, rb.id, err, lastLines(string(log), 3))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// initPid is the pid runc wrote for a floor container.
func initPid(rb rawBundle) int {
	data, _ := os.ReadFile(filepath.Join(rb.dir, "pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// rawStart times size `runc run -d` started at once, then removes the
// containers (untimed).
//
// With cpu, it adds the CPU time of the runc processes (and of what they
// waited for) to it: bench's children's, over the start.
func (p *poolBench) rawStart(bundles []rawBundle, cpu *samples) (time.Duration, error) {
	if stopping.Load() {
		return 0, errInterrupted
	}
	before := childrenCPU()
	errs := make([]error, len(bundles))
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i, rb := range bundles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			errs[i] = p.runDetached(rb)
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	d := time.Since(start)
	if cpu != nil {
		cpu.add(childrenCPU() - before)
	}
	rmErr := p.rawRemove(bundles)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return d, rmErr
}

// rawRunDetached is the floor's sample: one raw runc run -d of rb, timed,
// after the bundles of the last sample are deleted (untimed).
func (p *poolBench) rawRunDetached(bundles []rawBundle, rb rawBundle) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		if stopping.Load() {
			return 0, errInterrupted
		}
		if err := p.rawRemove(bundles); err != nil {
			return 0, err
		}
		start := time.Now()
		err := p.runDetached(rb)
		return time.Since(start), err
	}
}

// rawRemove kills and deletes floor containers, reaping their inits (bench
// is their subreaper).
func (p *poolBench) rawRemove(bundles []rawBundle) error {
	errs := make([]error, len(bundles))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, rb := range bundles {
		if _, err := os.Stat(filepath.Join(p.rawState, rb.id)); err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			pid := initPid(rb)
			p.runcCmd(rb, "kill", rb.id, "KILL").Run()
			if pid > 0 {
				mrtdtest.ReapPid(pid, 5*time.Second)
			}
			errs[i] = p.runcErr(rb, "delete --force", p.runcCmd(rb, "delete", "--force", rb.id).Run())
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// restart measures the restart latency against its two floors.
//
// With unconfined, mrtd and the floors run without seccomp: libseccomp
// compiling Docker's profile in runc init is most of a `runc run -d`, and
// hides mrtd's own share (the rows are for information).
func (p *poolBench) restart(unconfined bool) ([]row, []*samples, error) {
	args := []string{"--backoff-min", "1ms", "--backoff-max", "1ms"}
	prefix, label, what := "restart", "", ""
	if unconfined {
		args = append(args, "--seccomp", config.SeccompUnconfined)
		prefix, label, what = "restart-noseccomp", ", no seccomp", " (no seccomp)"
	}
	d, _, err := p.start(1, args...)
	if err != nil {
		return nil, nil, err
	}
	defer p.stop(d)
	bundles, err := p.rawBundles(prefix, 1, unconfined)
	if err != nil {
		return nil, nil, err
	}
	rb := bundles[0]
	if err := p.runDetached(rb); err != nil {
		return nil, nil, err
	}
	defer p.rawRemove(bundles)

	m := &samples{name: "mrtd: SIGKILL init -> worker running" + what}
	f1 := &samples{name: "runc run -d (deleted before)" + what}
	f2 := &samples{name: "runc delete --force + runc run -d" + what}
	err = interleave(*warmup, *n,
		series2(m, func() (time.Duration, error) { return p.killRestart(d) }),
		series2(f1, p.rawRunDetached(bundles, rb)),
		series2(f2, func() (time.Duration, error) {
			if stopping.Load() {
				return 0, errInterrupted
			}
			old := initPid(rb)
			start := time.Now()
			err := p.runcErr(rb, "delete --force", p.runcCmd(rb, "delete", "--force", rb.id).Run())
			if err == nil {
				err = p.runDetached(rb)
			}
			t := time.Since(start)
			if old > 0 {
				mrtdtest.ReapPid(old, 5*time.Second)
			}
			return t, err
		}),
	)
	if err != nil {
		return nil, nil, err
	}
	rows := []row{
		{
			figure: "restart after SIGKILL" + label, value: m.median(),
			floor: f1.median(), floorWhat: "runc run -d",
			target: 1.3, targetText: "<= 1.3x",
		},
		{
			figure: "restart vs delete --force + run" + label, value: m.median(),
			floor: f2.median(), floorWhat: "runc delete --force; run -d",
			target: 3, targetText: ">= 3x faster", faster: true,
		},
	}
	if unconfined {
		for i := range rows {
			rows[i].target, rows[i].targetText = 0, "(info)"
		}
	}
	return rows, []*samples{m, f1, f2}, nil
}

// killRestart kills the init of d's worker 0 with SIGKILL and returns the
// time until its next "worker running" event.
func (p *poolBench) killRestart(d *mrtdtest.Daemon) (time.Duration, error) {
	if stopping.Load() {
		return 0, errInterrupted
	}
	st := d.Snapshot()
	pid, ok := st.Pids[0]
	if !ok {
		return 0, errors.New("mrtd's worker 0 is not running")
	}
	restarts := st.Restarts[0]
	start := time.Now()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		return 0, fmt.Errorf("killing worker 0's init %d: %w", pid, err)
	}
	at, err := d.WaitFor(30*time.Second, func(s *mrtdtest.State) bool {
		_, up := s.Pids[0]
		return up && s.Restarts[0] > restarts
	})
	if err != nil {
		return 0, fmt.Errorf("waiting for worker 0 to run again: %w", err)
	}
	return at.Sub(start), nil
}

// startSplit is where a pool start's time goes.
type startSplit struct {
	// setup is the time until mrtd logged "starting workers"; self its
	// own CPU until every worker ran, children that of the runc
	// processes it had reaped by then; floorCPU that of the floor's runc
	// processes.
	setup, self, children, floorCPU *samples
}

// threadsCPU is the time pid's threads have run, in nanoseconds
// (/proc/PID/task/*/schedstat), rather than stat's clock ticks.
func threadsCPU(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %v", dir, e.Name(), err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}

// childrenCPU is the CPU time of bench's children it waited for, and of
// theirs (getrusage RUSAGE_CHILDREN).
func childrenCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runcResident counts runc processes on the host.
func (p *poolBench) runcResident() []mrtdtest.Proc {
	return mrtdtest.RuncProcesses(p.runc, p.runcPool, p.runcCached)
}

// memory measures mrtd's PSS with 1 and with 64 workers, and counts runc
// processes while they run.
func (p *poolBench) memory() ([]resRow, error) {
	const big = 64
	const reps = 3
	pss := map[int][]int64{}
	runcMax := map[int]int{}
	var runcSeen []string
	for i := range 2 * reps {
		size := 1
		if i%2 == 1 {
			size = big
		}
		d, _, err := p.start(size)
		if err != nil {
			return nil, err
		}
		// Let the start's garbage be collected and the runc processes
		// exit.
		time.Sleep(2 * time.Second)
		v, err := mrtdtest.PSS(d.Pid)
		rs := p.runcResident()
		if serr := p.stop(d); err == nil {
			err = serr
		}
		if err != nil {
			return nil, err
		}
		pss[size] = append(pss[size], v)
		runcMax[size] = max(runcMax[size], len(rs))
		for _, r := range rs {
			runcSeen = append(runcSeen, fmt.Sprintf("%d %s", r.Pid, r.Comm))
		}
	}
	med := func(v []int64) int64 {
		c := slices.Clone(v)
		slices.Sort(c)
		return c[len(c)/2]
	}
	one, many := med(pss[1]), med(pss[big])
	per := float64(many-one) / float64(big-1) / (1 << 20)
	resident := max(runcMax[1], runcMax[big])
	detail := "none"
	if len(runcSeen) > 0 {
		detail = strings.Join(runcSeen, ", ")
	}
	return []resRow{
		{
			figure: "mrtd PSS per extra worker", value: fmt.Sprintf("%.3f MiB", per),
			target: "<= 0.5 MiB", over: per > 0.5,
			detail: fmt.Sprintf("(PSS(64) - PSS(1)) / 63; PSS %.1f MiB with 1 worker, %.1f MiB with 64 (medians of %d: %s / %s)",
				float64(one)/(1<<20), float64(many)/(1<<20), reps, mibList(pss[1]), mibList(pss[big])),
		},
		{
			figure: "resident runc processes", value: strconv.Itoa(resident),
			target: "0", over: resident > 0,
			detail: fmt.Sprintf("max seen while 1 and 64 workers ran (exe is a runc binary, or comm runc*): %s", detail),
		},
	}, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func mibList(v []int64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%.1f", float64(x)/(1<<20)))
	}
	return strings.Join(s, " ")
}

// idleCPU measures mrtd's own CPU time (utime+stime) with size idle
// workers over -idle.
func (p *poolBench) idleCPU(size int) ([]resRow, error) {
	d, _, err := p.start(size)
	if err != nil {
		return nil, err
	}
	defer p.stop(d)
	time.Sleep(2 * time.Second)
	before, err := mrtdtest.ReadProc(d.Pid)
	if err != nil {
		return nil, err
	}
	events := d.Snapshot().RunningEvents + d.Snapshot().Exits
	t0 := time.Now()
	deadline := t0.Add(*idleWindow)
	for time.Now().Before(deadline) {
		if stopping.Load() {
			return nil, errInterrupted
		}
		time.Sleep(min(200*time.Millisecond, time.Until(deadline)))
	}
	after, err := mrtdtest.ReadProc(d.Pid)
	if err != nil {
		return nil, err
	}
	wall := time.Since(t0)
	st := d.Snapshot()
	ut, stt := after.UTime-before.UTime, after.STime-before.STime
	cpu := float64(ut+stt) / mrtdtest.ClockTicks
	pct := 100 * cpu / wall.Seconds()
	rs := p.runcResident()
	detail := fmt.Sprintf("%d ticks of 1/%ds in %.1fs (utime %d, stime %d); %d worker events meanwhile; %d runc processes",
		ut+stt, mrtdtest.ClockTicks, wall.Seconds(), ut, stt, st.RunningEvents+st.Exits-events, len(rs))
	return []resRow{{
		figure: fmt.Sprintf("mrtd idle CPU, %d workers", size), value: fmt.Sprintf("%.2f%% of a core", pct),
		target: "< 1%", over: pct >= 1, detail: detail,
	}}, nil
}

// checkClean checks that no mrtd, container or runc state is left, after
// the pool figures.
func (p *poolBench) checkClean() resRow {
	p.stopAll()
	var left []string
	for _, state := range []string{filepath.Join(p.runtime, "runc"), p.rawState} {
		ents, _ := os.ReadDir(state)
		for _, e := range ents {
			left = append(left, filepath.Join(filepath.Base(filepath.Dir(state)), filepath.Base(state), e.Name()))
		}
	}
	bents, _ := os.ReadDir(filepath.Join(p.runtime, "bundles"))
	for _, e := range bents {
		left = append(left, "bundles/"+e.Name())
	}
	r := resRow{figure: "left after the pool figures", target: "nothing", value: "nothing",
		detail: "mrtd stopped with SIGTERM each time (exit 0); runc state of mrtd and of the floors empty"}
	if len(left) > 0 {
		r.value, r.over = fmt.Sprintf("%d", len(left)), true
		r.detail = "left in runc state: " + strings.Join(left, " ") + " (removed at cleanup)"
	}
	return r
}

// cleanupPool stops every mrtd still running and removes the floors'
// containers.
func (p *poolBench) cleanupPool() {
	p.stopAll()
	ents, _ := os.ReadDir(p.rawState)
	var bundles []rawBundle
	for _, e := range ents {
		bundles = append(bundles, rawBundle{id: e.Name(), dir: filepath.Join(p.rawDir, e.Name())})
	}
	if len(bundles) > 0 {
		p.rawRemove(bundles)
	}
}

func printResTable(rows []resRow) {
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "pool resources\tvalue\ttarget\t")
	for _, r := range rows {
		mark := ""
		if r.over {
			mark = "  (over)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s%s\t\n", r.figure, r.value, r.target, mark)
	}
	tw.Flush()
	for _, r := range rows {
		fmt.Printf("  %s: %s\n", r.figure, r.detail)
	}
}
