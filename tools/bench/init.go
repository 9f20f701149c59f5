package main

// The --init figures: what the init mrtd carries (tini, run as each
// container's pid 1) costs each worker in memory. Pools of 1, 4 and 64
// workers run `sleep infinity` (pool.go's command) with --init and
// without, alternating, initReps pools of each; for each pool, the PSS of
// every process of every container (the init and sleep, or sleep alone)
// is summed, and the init's own apart.
//
//   - init PSS per extra worker: (init PSS of 64 workers - of 1) / 63, the
//     marginal cost, as pool.go's "mrtd PSS per extra worker"; target
//     <= 0.3 MiB. Every worker maps the same file of the cache
//     (init-<sha256>), so the init's text counts once across the pool: a
//     worker adds the init's private pages;
//   - the containers' PSS per worker with --init and without, for each
//     pool size (information: with few workers the text dominates).

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

var (
	initFlag = flag.Bool("init", true, "measure the --init figures (PSS per worker with --init vs. without)")
	initOnly = flag.Bool("init-only", false, "measure only the --init figures")
)

// applyInitOnly turns the other figures off for -init-only, as
// applyHealthOnly does for -health-only.
func applyInitOnly() {
	if *initOnly {
		*poolOnly, *poolFlag = true, false
	}
}

// initSizes are the pools measured; the first and the last give the
// marginal figure.
var initSizes = []int{1, 4, 64}

// initReps is how many pools of each size and side are measured.
const initReps = 3

// initWanted reports whether the --init figures are to be measured.
func initWanted() bool {
	return *initOnly || (*initFlag && *poolFlag && !*imageOnly && !*keepidOnly)
}

// initPSS is what one pool's containers take.
type initPSS struct {
	containers int64 // every process of every container
	inits      int64 // the containers' pid 1 (the init, with --init)
}

// initFigures measures the --init rows of the resources table.
func (b *bench) initFigures() ([]resRow, error) {
	if out, err := exec.Command(b.mrtd, "version").Output(); err != nil || !strings.Contains(string(out), "\ninit: ") {
		fmt.Fprintf(os.Stderr, "bench: --init figures skipped: %s carries no init (mrtd version: %v)\n", b.mrtd, err)
		return []resRow{{figure: "--init figures", value: "-", target: "-", detail: "skipped: this mrtd carries no init"}}, nil
	}
	p := &poolBench{bench: b, daemons: map[*mrtdtest.Daemon]bool{}}
	p.dir = filepath.Join(b.tmp, "init")
	p.cache = filepath.Join(p.dir, "cache")
	p.runtime = filepath.Join(p.dir, "run")
	if err := os.Mkdir(p.dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(p.dir, 0o755); err != nil {
		return nil, err
	}
	defer p.stopAll()
	fmt.Fprintln(os.Stderr, "bench: --init: warming its cache ...")
	if _, err := p.mrtdStart(1); err != nil {
		return nil, fmt.Errorf("first pool (extracting the rootfs into %s): %w", p.cache, err)
	}

	with, without := map[int][]initPSS{}, map[int][]initPSS{}
	for _, size := range initSizes {
		fmt.Fprintf(os.Stderr, "bench: --init: PSS of %d worker%s with --init vs. without (%d pools each) ...\n", size, plural(size), initReps)
		for range initReps {
			for _, side := range []struct {
				flags []string
				into  map[int][]initPSS
			}{{[]string{"--init"}, with}, {nil, without}} {
				m, err := p.containersPSS(size, side.flags...)
				if err != nil {
					return nil, err
				}
				side.into[size] = append(side.into[size], m)
			}
		}
	}

	med := func(ms []initPSS, f func(initPSS) int64) int64 {
		v := make([]int64, 0, len(ms))
		for _, m := range ms {
			v = append(v, f(m))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	all := func(m initPSS) int64 { return m.containers }
	inits := func(m initPSS) int64 { return m.inits }
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	first, last := initSizes[0], initSizes[len(initSizes)-1]
	per := mib(med(with[last], inits)-med(with[first], inits)) / float64(last-first)
	rows := []resRow{{
		figure: "--init: init PSS per extra worker", value: fmt.Sprintf("%.3f MiB", per),
		target: "<= 0.3 MiB", over: per > 0.3,
		detail: fmt.Sprintf("(inits' PSS(%d) - PSS(%d)) / %d; the inits' PSS %.2f MiB with %d worker%s, %.2f MiB with %d (medians of %d); every worker maps one init file, whose text counts once",
			last, first, last-first, mib(med(with[first], inits)), first, plural(first), mib(med(with[last], inits)), last, initReps),
	}}
	for _, size := range initSizes {
		w, wo := mib(med(with[size], all))/float64(size), mib(med(without[size], all))/float64(size)
		rows = append(rows, resRow{
			figure: fmt.Sprintf("--init: containers' PSS per worker, %d worker%s", size, plural(size)),
			value:  fmt.Sprintf("+%.3f MiB", w-wo), target: "(info)",
			detail: fmt.Sprintf("%.3f MiB with --init (the init %.3f), %.3f MiB without: every process of each container (sleep, and the init), medians of %d pools",
				w, mib(med(with[size], inits))/float64(size), wo, initReps),
		})
	}
	return rows, nil
}

// containersPSS starts a pool of size workers with flags, waits until
// each container's pid 1 has started its command when it is an init, and
// sums the PSS of the containers' processes, then stops the pool.
func (p *poolBench) containersPSS(size int, flags ...string) (initPSS, error) {
	d, _, err := p.start(size, flags...)
	if err != nil {
		return initPSS{}, err
	}
	pids := d.Snapshot().Pids
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for len(flags) > 0 && len(mrtdtest.LiveChildren(pid)) == 0 {
			if time.Now().After(deadline) {
				p.stop(d)
				return initPSS{}, fmt.Errorf("mrtd %s: the init (pid %d) started no command", strings.Join(flags, " "), pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Let the start's page faults settle.
	time.Sleep(time.Second)
	var m initPSS
	for _, pid := range pids {
		v, err := mrtdtest.PSS(pid)
		if err != nil {
			p.stop(d)
			return initPSS{}, err
		}
		m.inits += v
		m.containers += v
		for _, c := range mrtdtest.LiveChildren(pid) {
			if v, err := mrtdtest.PSS(c); err == nil {
				m.containers += v
			}
		}
	}
	return m, p.stop(d)
}
