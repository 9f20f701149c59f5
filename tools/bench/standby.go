package main

// The --standby figures (issue 11). With --standby, mrtd keeps each
// worker's next container created (`runc create`) while the current one
// runs, and starts it (`runc start`) when the worker dies.
//
//   - restart with --standby: SIGKILL of a worker's init until its next
//     "worker running", in a pool started with --standby and otherwise the
//     default flags, each sample a worker that had not failed before (the
//     first failure restarts at once), measured beside the same without
//     --standby and one raw `runc run -d` (firstRestart, health.go), all
//     interleaved. Before every sample, of either series, every worker of
//     the --standby pool shows its standby ready in `mrtd status --json`
//     and neither mrtd runs a runc command: no sample pays for a standby
//     being created. A sample counts as starting from the standby when the
//     replacement's pid (the "worker running" event's) was alive before
//     the kill: the standby's init, which `runc start` lets exec the
//     command; the others are counted and reported. For the breakdown, a
//     raw `runc start` of a container `runc create`d beforehand is timed in
//     the same rounds;
//   - memory per standby: (the PSS of mrtd and of every process below it,
//     with --standby) - (the same without), / the workers, for pools of
//     standbyMemWorkers (and standbyMemLarge, for information),
//     standbyMemReps pools a side, alternating, each
//     measured once every standby is ready and no runc command runs; the
//     standbys' inits are split into their anonymous memory and the runc
//     binary's file pages, which all of them share.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

var (
	standbyFlag = flag.Bool("standby", true, "measure the --standby figures (with the pool figures)")
	standbyOnly = flag.Bool("standby-only", false, "measure only the --standby figures: a restart with --standby and without vs. runc run -d, and the memory per standby")
)

const (
	// standbyInstance is the --standby pool's instance, beside the plain
	// pool's poolInstance.
	standbyInstance = "bench-standby"
	// standbyMemWorkers is the pool size of the memory figure, and
	// standbyMemReps its pools a side; standbyMemLarge a larger pool's,
	// measured the same way for information: the runc binary's pages are
	// shared among the standbys.
	standbyMemWorkers = 4
	standbyMemLarge   = 16
	standbyMemReps    = 3
	// standbyReadyTimeout bounds the wait for every standby of a pool
	// just started, and settleTimeout that before a sample.
	standbyReadyTimeout = 30 * time.Second
	settleTimeout       = 10 * time.Second
	// initComm is the name of a container's init until it execs the
	// command: a standby's, all along.
	initComm = "runc:[2:INIT]"
)

// standbyWanted reports whether the --standby figures are to be measured.
func standbyWanted() bool {
	return *standbyOnly || *issue11Only || (*standbyFlag && *poolFlag && !*imageOnly && !*keepidOnly)
}

// hasStandby reports whether the mrtd binary has --standby.
func hasStandby(bin string) bool {
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	return strings.Contains(string(out), "--standby")
}

// workerStatus is what the figures read of a worker in `mrtd status
// --json` (control.WorkerStatus).
type workerStatus struct {
	Worker  int    `json:"worker"`
	State   string `json:"state"`
	Pid     int    `json:"pid"`
	Standby bool   `json:"standby"`
}

// status runs `mrtd status --json` for the pool instance.
func (p *poolBench) status(instance string) ([]workerStatus, error) {
	if stopping.Load() {
		return nil, errInterrupted
	}
	cmd := exec.Command(p.mrtd, "status", "--json", "--instance", instance, "--runtime-dir", p.runtime)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("mrtd status --json --instance %s: %v: %s", instance, err, strings.TrimSpace(stderr.String()))
	}
	var resp struct {
		Workers []workerStatus `json:"workers"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("mrtd status --json: %w", err)
	}
	return resp.Workers, nil
}

// standbyPool is a pool running with --standby.
type standbyPool struct {
	p        *poolBench
	d        *mrtdtest.Daemon
	instance string
	size     int
	// missed counts the samples whose replacement was not the standby;
	// late those before which a standby was not ready in time.
	missed, late int
}

// startStandby starts a pool of size workers with --standby and extra
// flags, and waits until every standby is ready. When this mrtd has no
// --standby, or shows no standby ready, it returns nil and records why
// in the issue 11 figures.
func (p *poolBench) startStandby(instance string, size int, extra ...string) (*standbyPool, error) {
	if !hasStandby(p.mrtd) {
		p.i11().standbySkip = "this mrtd has no --standby"
		fmt.Fprintf(os.Stderr, "bench: --standby figures skipped: %s has no --standby\n", p.mrtd)
		return nil, nil
	}
	d, _, err := p.startInstance(instance, size, append([]string{"--standby"}, extra...)...)
	if err != nil {
		return nil, err
	}
	sb := &standbyPool{p: p, d: d, instance: instance, size: size}
	if err := sb.settle(standbyReadyTimeout); err != nil {
		p.stop(d)
		if errors.Is(err, errInterrupted) {
			return nil, err
		}
		p.i11().standbySkip = fmt.Sprintf("no standby shown ready in mrtd status within %v", standbyReadyTimeout)
		fmt.Fprintf(os.Stderr, "bench: --standby figures skipped: %v\n", err)
		return nil, nil
	}
	return sb, nil
}

// settle waits until every worker runs with its standby ready, and mrtd
// runs no runc command.
func (sb *standbyPool) settle(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ws, err := sb.p.status(sb.instance)
		if err != nil {
			return err
		}
		ready := 0
		for _, w := range ws {
			if w.State == "running" && w.Standby {
				ready++
			}
		}
		if ready == sb.size {
			return quiet(sb.d, time.Until(deadline))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mrtd --standby: %d of %d workers running with a standby ready after %v", ready, sb.size, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quiet waits until no child of d is a runc command (a start, a create,
// a delete under way): a container's init is not one.
func quiet(d *mrtdtest.Daemon, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if stopping.Load() {
			return errInterrupted
		}
		var busy []string
		for _, c := range mrtdtest.Children(d.Pid) {
			if c.State != 'Z' && strings.HasPrefix(c.Comm, "runc") && c.Comm != initComm {
				busy = append(busy, fmt.Sprintf("%d %s", c.Pid, c.Comm))
			}
		}
		if len(busy) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mrtd (pid %d) still runs %s after %v", d.Pid, strings.Join(busy, ", "), timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kill kills worker w's init and returns the time until its replacement
// runs. A measured sample (split not nil, its parts added to it) is
// missed when the replacement was not a process alive before the kill
// (the standby's init).
func (sb *standbyPool) kill(w int, split *restartSplit) (time.Duration, error) {
	before := map[int]bool{}
	for _, pid := range mrtdtest.LiveChildren(sb.d.Pid) {
		before[pid] = true
	}
	t, err := sb.p.killWorker(sb.d, w, split)
	if err != nil {
		return 0, err
	}
	if pid := sb.d.Snapshot().Pids[w]; split != nil && !before[pid] {
		sb.missed++
	}
	return t, nil
}

// rawStartCreated is the breakdown's sample: the containers of the last
// sample deleted and rb created with `runc create` (untimed), then `runc
// start` of it, timed.
func (p *poolBench) rawStartCreated(bundles []rawBundle, rb rawBundle) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		if stopping.Load() {
			return 0, errInterrupted
		}
		if err := p.rawRemove(bundles); err != nil {
			return 0, err
		}
		os.Remove(filepath.Join(rb.dir, "pid"))
		cmd := p.runcCmd(rb, "create", "--pid-file", filepath.Join(rb.dir, "pid"), "--bundle", rb.dir, rb.id)
		if err := p.runcErr(rb, "create", cmd.Run()); err != nil {
			return 0, err
		}
		start := time.Now()
		err := p.runcErr(rb, "start", p.runcCmd(rb, "start", rb.id).Run())
		return time.Since(start), err
	}
}

// standbyFigures measures the --standby figures: the restarts, unless
// the health figures measured them already, and the memory per standby.
func (b *bench) standbyFigures() ([]row, []resRow, []*samples, error) {
	p, err := b.poolSetup()
	if err != nil {
		return nil, nil, nil, err
	}
	var rows []row
	var series []*samples
	if b.i11().restartPlain == nil {
		fmt.Fprintf(os.Stderr, "bench: restart after a crash (1st failure), with --standby and without, vs. runc run -d (%d runs) ...\n", *n)
		if rows, series, err = p.firstRestart(); err != nil {
			return nil, nil, nil, err
		}
	}
	if why := b.i11().standbySkip; why != "" {
		return rows, []resRow{{figure: "memory per standby (PSS)", value: "-", target: "reported", detail: "skipped: " + why}}, series, nil
	}
	var res []resRow
	for _, size := range []int{standbyMemWorkers, standbyMemLarge} {
		fmt.Fprintf(os.Stderr, "bench: memory per standby: %d workers with --standby vs. without (%d pools each) ...\n", size, standbyMemReps)
		m, err := p.standbyMemory(size)
		if err != nil {
			return nil, nil, nil, err
		}
		if size == standbyMemWorkers {
			b.i11().mem = m
		} else {
			b.i11().memLarge = m
		}
		res = append(res, m.res())
	}
	return rows, res, series, nil
}

// standbyMem is the memory figure's measurements, one per pool of
// workers workers.
type standbyMem struct {
	workers       int
	with, without []poolPSS
}

// poolPSS is what one pool took.
type poolPSS struct {
	total int64 // mrtd and every process below it
	mrtd  int64 // mrtd alone
	inits int64 // the processes named runc:[2:INIT]: the standbys
	// initsAnon and initsFile split inits into anonymous memory (each
	// init's own) and file pages (the runc binary's text, shared by
	// every init that maps it).
	initsAnon, initsFile int64
}

// perStandby is the figure, in bytes: the difference of the medians'
// totals, per worker.
func (m *standbyMem) perStandby() float64 {
	return float64(medPSS(m.with, poolPSS.totalOf)-medPSS(m.without, poolPSS.totalOf)) / float64(m.workers)
}

func (v poolPSS) totalOf() int64     { return v.total }
func (v poolPSS) mrtdOf() int64      { return v.mrtd }
func (v poolPSS) initsOf() int64     { return v.inits }
func (v poolPSS) initsAnonOf() int64 { return v.initsAnon }
func (v poolPSS) initsFileOf() int64 { return v.initsFile }

func medPSS(vs []poolPSS, f func(poolPSS) int64) int64 {
	x := make([]int64, 0, len(vs))
	for _, v := range vs {
		x = append(x, f(v))
	}
	slices.Sort(x)
	if len(x) == 0 {
		return 0
	}
	return x[len(x)/2]
}

// detail says where the memory is.
func (m *standbyMem) detail() string {
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	per := func(f func(poolPSS) int64) float64 {
		return mib(medPSS(m.with, f)-medPSS(m.without, f)) / float64(m.workers)
	}
	var tw, to []string
	for i := range m.with {
		tw = append(tw, fmt.Sprintf("%.1f", mib(m.with[i].total)))
	}
	for i := range m.without {
		to = append(to, fmt.Sprintf("%.1f", mib(m.without[i].total)))
	}
	perInit := func(f func(poolPSS) int64) float64 { return mib(medPSS(m.with, f)) / float64(m.workers) }
	return fmt.Sprintf("(PSS of mrtd and all below it with --standby - without) / %d workers: %.2f MiB with (%s), %.2f MiB without (%s), medians of %d pools each;\n"+
		"    of it per standby, its init (runc init waiting for runc start) %.2f MiB: %.2f MiB anonymous, its own, and %.2f MiB of file pages, the runc binary's, whose PSS is shared among all %d standbys (fewer MiB each in a larger pool); mrtd's own %+.2f MiB",
		m.workers, mib(medPSS(m.with, poolPSS.totalOf)), strings.Join(tw, " "), mib(medPSS(m.without, poolPSS.totalOf)), strings.Join(to, " "),
		len(m.with), perInit(poolPSS.initsOf), perInit(poolPSS.initsAnonOf), perInit(poolPSS.initsFileOf), m.workers, per(poolPSS.mrtdOf))
}

func (m *standbyMem) res() resRow {
	return resRow{
		figure: fmt.Sprintf("memory per standby (PSS), %d workers", m.workers), value: fmt.Sprintf("%.2f MiB", m.perStandby()/(1<<20)),
		target: "reported", detail: m.detail(),
	}
}

// standbyMemory measures pools of size workers with --standby and
// without, alternating.
func (p *poolBench) standbyMemory(size int) (*standbyMem, error) {
	m := &standbyMem{workers: size}
	for range standbyMemReps {
		for _, standby := range []bool{true, false} {
			var d *mrtdtest.Daemon
			if standby {
				sb, err := p.startStandby(standbyInstance, size)
				if err != nil {
					return nil, err
				}
				if sb == nil {
					return nil, fmt.Errorf("mrtd --standby: %s", p.i11().standbySkip)
				}
				d = sb.d
			} else {
				var err error
				if d, _, err = p.start(size); err != nil {
					return nil, err
				}
				if err := quiet(d, settleTimeout); err != nil {
					p.stop(d)
					return nil, err
				}
			}
			// Let the start's garbage be collected and its page
			// faults settle, as the other memory figures do.
			time.Sleep(2 * time.Second)
			v, err := treePSS(d.Pid)
			if serr := p.stop(d); err == nil {
				err = serr
			}
			if err != nil {
				return nil, err
			}
			if standby {
				m.with = append(m.with, v)
			} else {
				m.without = append(m.without, v)
			}
		}
	}
	return m, nil
}

// treePSS sums the PSS of pid and of every process below it.
func treePSS(pid int) (poolPSS, error) {
	kids := map[int][]mrtdtest.Proc{}
	for _, pr := range mrtdtest.Procs() {
		kids[pr.PPid] = append(kids[pr.PPid], pr)
	}
	var v poolPSS
	var err error
	if v.mrtd, err = mrtdtest.PSS(pid); err != nil {
		return v, err
	}
	v.total = v.mrtd
	var walk func(int)
	walk = func(parent int) {
		for _, c := range kids[parent] {
			if c.State == 'Z' {
				continue
			}
			// A process that exited meanwhile has no PSS left.
			if x, err := mrtdtest.PSS(c.Pid); err == nil {
				v.total += x
				if c.Comm == initComm {
					v.inits += x
					anon, file := pssParts(c.Pid)
					v.initsAnon += anon
					v.initsFile += file
				}
			}
			walk(c.Pid)
		}
	}
	walk(pid)
	return v, nil
}

// pssParts reads Pss_Anon and Pss_File of pid's smaps_rollup, in bytes.
func pssParts(pid int) (anon, file int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Pss_Anon:":
			anon = kb << 10
		case "Pss_File:":
			file = kb << 10
		}
	}
	return anon, file
}
