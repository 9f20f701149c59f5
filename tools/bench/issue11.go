package main

// Issue 11's table: each figure beside its floor, measured in the same
// run, with the ratio, the target, the samples of each side and whether
// the target is met. The figures come from the sections that measure them
// (the sections name each series the same way):
//
//   - restart with --standby, and without (default flags), kill to
//     replacement running, vs. one raw `runc run -d`: firstRestart
//     (health.go, standby.go);
//   - memory per standby: standbyMemory (standby.go);
//   - `mrtd run -- /bin/true`, warm, vs. `runc run` of the same
//     config.json: runFigures;
//   - `mrtd run --rootfs x.tar.zst` (the archive mrtd embeds, as a file),
//     warm, vs. `mrtd run --rootfs DIR` of the tree extracted from it:
//     proportionality;
//   - pool start of 1, 4 and 16 workers vs. as many `runc run -d` at once:
//     startFigures (pool.go);
//   - cold start: `mrtd run -- /bin/true` of the embedded rootfs with a
//     new, empty cache dir each sample vs. `zstd -dc ARCHIVE | tar -x` into
//     a new directory on the same filesystem, alternating, each sample
//     after a sync: cold.
//
// -issue11-only measures these rows alone; in a full run the table comes
// last.

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

var issue11Only = flag.Bool("issue11-only", false, "measure only the figures of issue 11's table")

// issue11Sizes are the pool starts of issue 11's table.
var issue11Sizes = []int{1, 4, 16}

// issue11 holds the samples of issue 11's figures, filled by the sections
// that measure them; nil when not measured.
type issue11 struct {
	warm, warmFloor *samples
	// warmDebug is the same at debug level, and warmSetup its time until
	// mrtd logged "starting container".
	warmDebug, warmSetup  *samples
	archive, archiveFloor *samples
	// archiveSetup and archiveFloorSetup are the same at debug level,
	// until mrtd logged "starting container".
	archiveSetup, archiveFloorSetup *samples
	// cold is the first run with an empty cache; coldLogged the
	// extraction mrtd logged in it; coldFloorSync a syncfs after the
	// floor; coldWarm the warm start's median.
	cold, coldFloor, coldLogged, coldFloorSync *samples
	coldWarm                                   time.Duration
	start                                      map[int][2]*samples // mrtd, floor by size
	// startSplit is, by size, where a pool start's time goes.
	startSplit                 map[int]startSplit
	restartStandby             *samples
	restartPlain, restartFloor *samples
	// The restarts' parts, by mrtd's log.
	restartStandbySplit, restartPlainSplit restartSplit
	// runcStart is a raw runc start of a created container, for the
	// standby's breakdown.
	runcStart *samples
	// standbyMissed counts the --standby samples whose replacement was not
	// the standby; standbyLate those before which a standby was not shown
	// ready in time.
	standbyMissed, standbyLate int
	// standbySkip says why the standby figures were not measured.
	standbySkip string
	mem         *standbyMem
	// memLarge is the same for a larger pool, for information.
	memLarge *standbyMem
}

// i11 returns issue 11's figures, made on first use.
func (b *bench) i11() *issue11 {
	if b.issue == nil {
		b.issue = &issue11{start: map[int][2]*samples{}, startSplit: map[int]startSplit{}}
	}
	return b.issue
}

// issue11Only measures issue 11's rows alone (-issue11-only), or the
// --standby ones (-standby-only), and prints the table.
func (b *bench) issue11Only() error {
	what := "issue 11's figures"
	if *standbyOnly {
		what = "the --standby figures"
	}
	fmt.Printf("measuring %s only: pool workers run %q; restarts %d runs (%d warm-up); memory %d pools a side of %d and of %d workers\n",
		what, strings.Join(poolCommand, " "), *n, *warmup, standbyMemReps, standbyMemWorkers, standbyMemLarge)
	fmt.Println()
	var series []*samples
	var res []resRow
	if *issue11Only {
		_, s, err := b.runFigures()
		if err != nil {
			return err
		}
		series = append(series, s...)
		p, err := b.poolSetup()
		if err != nil {
			return err
		}
		_, s, err = p.startFigures(issue11Sizes)
		if err != nil {
			return err
		}
		series = append(series, s...)
	}
	_, r, s, err := b.standbyFigures()
	if err != nil {
		return err
	}
	res, series = append(res, r...), append(series, s...)
	b.printIssue11()
	if *issue11Only {
		b.noteExt4()
	}
	if len(res) > 0 {
		fmt.Println()
		printResTable(res)
	}
	printSeries(series)
	if b.pool != nil {
		if r := b.pool.checkClean(); r.over {
			fmt.Printf("\n%s: %s\n", r.figure, r.detail)
		}
	}
	return nil
}

// issue11Row is one line of issue 11's table.
type issue11Row struct {
	figure, value, floor, ratio, target, n, result string
}

// ratioRow compares the medians of value and floor.
func ratioRow(figure, floorWhat string, value, floor *samples, target float64, why string) issue11Row {
	r := issue11Row{figure: figure, target: fmt.Sprintf("<= %gx", target)}
	if value == nil || floor == nil || len(value.d) == 0 || len(floor.d) == 0 {
		if why == "" {
			why = "not measured in this run"
		}
		r.value, r.floor, r.ratio, r.n, r.result = "-", floorWhat, "-", "-", why
		return r
	}
	ratio := float64(value.median()) / float64(floor.median())
	r.value = ms(value.median())
	r.floor = fmt.Sprintf("%s (%s)", ms(floor.median()), floorWhat)
	r.ratio = fmt.Sprintf("%.2fx", ratio)
	r.n = fmt.Sprintf("%d/%d", len(value.d), len(floor.d))
	r.result = "met"
	if ratio > target {
		r.result = "NOT MET"
	}
	return r
}

// printIssue11 prints issue 11's table and what each figure is made of.
func (b *bench) printIssue11() {
	i := b.i11()
	rows := []issue11Row{
		ratioRow("restart with --standby, kill to replacement running", "runc run -d",
			i.restartStandby, i.restartFloor, 0.3, i.standbySkip),
		ratioRow("restart without standby, default flags", "runc run -d",
			i.restartPlain, i.restartFloor, 1.1, ""),
	}
	mem := issue11Row{figure: "memory per standby (PSS)", value: "-", floor: "-", ratio: "-", target: "reported", n: "-", result: "not measured in this run"}
	if i.standbySkip != "" {
		mem.result = i.standbySkip
	}
	if i.mem != nil {
		mem.value = fmt.Sprintf("%.2f MiB", i.mem.perStandby()/(1<<20))
		mem.floor = fmt.Sprintf("%d workers without --standby", i.mem.workers)
		mem.n = fmt.Sprintf("%d/%d", len(i.mem.with), len(i.mem.without))
		mem.result = "reported"
	}
	rows = append(rows, mem,
		ratioRow("mrtd run -- /bin/true, warm", "runc run, same config.json",
			i.warm, i.warmFloor, 1.15, ""),
		ratioRow("mrtd run --rootfs x.tar.zst, warm", "mrtd run --rootfs DIR",
			i.archive, i.archiveFloor, 1.02, ""),
	)
	for _, size := range issue11Sizes {
		s := i.start[size]
		rows = append(rows, ratioRow(fmt.Sprintf("pool start, %d worker%s", size, plural(size)),
			fmt.Sprintf("%d x runc run -d at once", size), s[0], s[1], 1.15, ""))
	}
	rows = append(rows, ratioRow("cold start, embedded rootfs, fresh cache dir", "zstd -dc | tar -x",
		i.cold, i.coldFloor, 1.5, ""))

	fmt.Println("issue 11 (medians; n = samples of the figure/of the floor, or pools a side)")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\tfloor\tratio\ttarget\tn\tresult\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.figure, r.value, r.floor, r.ratio, r.target, r.n, r.result)
	}
	tw.Flush()

	// What the figures are made of.
	if i.restartStandby != nil && len(i.restartStandby.d) > 0 {
		used := "every sample's replacement was the standby (its pid alive before the kill)"
		if i.standbyMissed > 0 {
			used = fmt.Sprintf("%d of %d samples did NOT start the standby (the replacement's pid was not alive before the kill): they are in the median", i.standbyMissed, len(i.restartStandby.d))
		}
		if i.standbyLate > 0 {
			used += fmt.Sprintf("; before %d samples a standby was not shown ready within %v", i.standbyLate, settleTimeout)
		}
		fmt.Printf("  restart with --standby: %s;\n    %s; a raw runc start of a created container takes %s (n %d)\n",
			used, i.restartStandbySplit.String(), ms(i.runcStart.median()), len(i.runcStart.d))
	}
	if i.restartPlain != nil && len(i.restartPlain.d) > 0 {
		fmt.Printf("  restart without standby: %s\n", i.restartPlainSplit.String())
	}
	for _, size := range issue11Sizes {
		s, split := i.start[size], i.startSplit[size]
		if s[0] == nil || split.setup == nil || len(split.setup.d) == 0 {
			continue
		}
		fmt.Printf("  pool start, %d worker%s: %s until mrtd logs \"starting workers\" (its setup, n %d), %s after it; the floor %s;\n",
			size, plural(size), ms(split.setup.median()), len(split.setup.d), ms(s[0].median()-split.setup.median()), ms(s[1].median()))
		fmt.Printf("    CPU: mrtd's own %s (its threads' schedstat) and the runc processes it reaped by the time all run %s (/proc stat, 10 ms ticks; n %d), the floor's runc processes %s (n %d)\n",
			ms(split.self.median()), ms(split.children.median()), len(split.self.d), ms(split.floorCPU.median()), len(split.floorCPU.d))
	}
	if i.archive != nil && len(i.archive.d) > 0 && len(i.archive.d) == len(i.archiveFloor.d) {
		// The target is within the spread of either side: the rounds,
		// each of which ran both, compared one by one.
		var d samples
		for k := range i.archive.d {
			d.add(i.archive.d[k] - i.archiveFloor.d[k])
		}
		fmt.Printf("  mrtd run --rootfs x.tar.zst - --rootfs DIR, round by round: median %s (quartiles %s, %s; n %d); the figures' own spread (p90 - min) is %s and %s;\n",
			signedMs(d.median()), signedMs(d.quantile(0.25)), signedMs(d.quantile(0.75)), len(d.d),
			ms(i.archive.quantile(0.9)-i.archive.sorted()[0]), ms(i.archiveFloor.quantile(0.9)-i.archiveFloor.sorted()[0]))
		if a, f := i.archiveSetup, i.archiveFloorSetup; a != nil && len(a.d) > 0 && len(a.d) == len(f.d) {
			var sd samples
			for k := range a.d {
				sd.add(a.d[k] - f.d[k])
			}
			fmt.Printf("    the part that differs, mrtd's setup until \"starting container\" (debug level): %s with the archive, %s with DIR, round by round %s (quartiles %s, %s; n %d)\n",
				ms(a.median()), ms(f.median()), signedMs(sd.median()), signedMs(sd.quantile(0.25)), signedMs(sd.quantile(0.75)), len(sd.d))
		}
	}
	if i.warmSetup != nil && len(i.warmSetup.d) > 0 {
		fmt.Printf("  mrtd run -- /bin/true, warm: at debug level (%s, n %d), %s until mrtd logs \"starting container\" (its setup: the cache, the spec, the bundle), %s after it (runc run, the exit, the cleanup); runc run alone %s\n",
			ms(i.warmDebug.median()), len(i.warmDebug.d), ms(i.warmSetup.median()), ms(i.warmDebug.median()-i.warmSetup.median()), ms(i.warmFloor.median()))
	}
	for _, m := range []*standbyMem{i.mem, i.memLarge} {
		if m != nil {
			fmt.Printf("  memory per standby, %d workers: %.2f MiB, %s\n", m.workers, m.perStandby()/(1<<20), m.detail())
		}
	}
	if i.cold != nil && len(i.cold.d) > 0 && len(i.coldLogged.d) > 0 {
		rest := i.cold.median() - i.coldLogged.median()
		fmt.Printf("  cold start %s = extraction %s (mrtd's log, n %d: zstd decoding, writing the tree, sha256, syncfs) + %s (mrtd's start, writing runc into the cache, the run: a warm start is %s);\n"+
			"    the floor leaves its tree in the page cache: a syncfs after it takes %s more (n %d), as mrtd's before it publishes the tree\n",
			ms(i.cold.median()), ms(i.coldLogged.median()), len(i.coldLogged.d), ms(rest), ms(i.coldWarm),
			ms(i.coldFloorSync.median()), len(i.coldFloorSync.d))
	}
}

// String says where a restart's time goes, in medians.
func (s restartSplit) String() string {
	if s.reaped == nil || len(s.reaped.d) == 0 {
		return "no split: mrtd logged no \"worker exited\" between the kill and the replacement"
	}
	return fmt.Sprintf("kill -> \"worker exited\" logged %s, then -> \"worker running\" %s (n %d)",
		ms(s.reaped.median()), ms(s.started.median()), len(s.reaped.d))
}

// signedMs is ms with a sign.
func signedMs(d time.Duration) string {
	if d >= 0 {
		return "+" + ms(d)
	}
	return ms(d)
}
