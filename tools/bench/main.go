// Command bench measures mrtd against floors measured in the same run, and
// prints each figure as a ratio to its floor:
//
//	go run ./tools/bench -runc build/runc -mrtd bin/mrtd -archive build/rootfs.tar.zst
//
// The figures:
//
//   - warm start: `mrtd run -- /bin/true` with a warm cache vs. `runc run` of
//     a bundle whose config.json is what mrtd writes (container.Spec with the
//     same options), interleaved, with the same at debug level, whose
//     "starting container" line splits mrtd's setup from the run;
//   - cold extraction: a run with a fresh cache minus the warm start vs.
//     `zstd -dc ARCHIVE | tar -x` into the same filesystem;
//   - proportionality: a warm start with the ~100 MB embedded rootfs vs. one
//     with a tiny rootfs archive, and vs. the same tree passed as a directory;
//   - the pool (`mrtd --workers N`, see pool.go): start of N = 1, 4, 16, 64
//     workers vs. N raw `runc run -d` at once; restart after SIGKILL vs.
//     `runc run -d` and vs. `runc delete --force` + `runc run -d`; and, as
//     figures with targets rather than ratios, mrtd's PSS per worker,
//     resident runc processes and idle CPU;
//   - images (see image.go): pull + flatten into an empty cache vs. `skopeo
//     copy` + `umoci unpack` of the same image from a docker-registry on
//     127.0.0.1; a warm start with --image vs. the same tree as --rootfs DIR;
//   - health checks and restarts at once (see health.go): the restart after
//     a worker's first failure with the default flags vs. `runc run -d`;
//     the CPU of a health check vs. a raw `runc exec`, and of checks every
//     30 s of 16 workers in % of a core;
//   - --init (see init.go): the init's PSS per extra worker, and the
//     containers' PSS per worker with --init vs. without, 1, 4 and 64
//     workers (-init-only);
//   - --user (keep-id, see keepid.go): a warm start, a pool worker's restart
//     after SIGKILL and a first run with an empty cache, each with --user
//     1000 vs. without, both sides as the same unprivileged uid with a
//     subordinate id range (faked when bench runs as root);
//   - --standby (see standby.go): a worker's restart from its standby vs.
//     `runc run -d`, and the memory a standby takes (-standby-only);
//   - issue 11's table (see issue11.go), printed last from the figures
//     above; -issue11-only measures its rows alone.
//
// Ratios are reported, never enforced: bench exits 0 unless a measurement
// could not run at all. Everything it creates lives under one temporary
// directory, removed at the end (and on Ctrl-C, after the current run).
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/internal/mrtdtest"
	"github.com/mrt-project/mrt/rootfs"
)

var (
	runcPath    = flag.String("runc", "", "the runc `binary` the floor runs (the one mrtd embeds)")
	mrtdPath    = flag.String("mrtd", "", "the mrtd `binary` to measure")
	archivePath = flag.String("archive", "", "the rootfs `archive` (.tar.zst) mrtd embeds, for the extraction floor")
	n           = flag.Int("n", 30, "`runs` per series for the warm-start figures (median reported)")
	coldN       = flag.Int("cold-n", 5, "`runs` per series for the cold-extraction figures")
	warmup      = flag.Int("warmup", 3, "unmeasured `runs` of each series before measuring")
	tmpParent   = flag.String("tmpdir", "", "create the work directory under `DIR` (default: $TMPDIR or /tmp); when run as root, uid 65534 must be able to traverse it")
	verbose     = flag.Bool("v", false, "print every command run")
	poolFlag    = flag.Bool("pool", true, "measure the pool (mrtd --workers N) figures")
	poolOnly    = flag.Bool("pool-only", false, "measure only the pool figures")
	idleWindow  = flag.Duration("idle", 10*time.Second, "`window` over which the pool's idle CPU is measured")
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: bench -runc RUNC -mrtd MRTD -archive ROOTFS.tar.zst [-n N]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	only := 0
	for _, o := range []bool{*poolOnly, *imageOnly, *keepidOnly, *healthOnly, *initOnly, *standbyOnly, *issue11Only} {
		if o {
			only++
		}
	}
	if only > 1 {
		fmt.Fprintln(os.Stderr, "bench: -pool-only, -image-only, -keepid-only, -health-only, -init-only, -standby-only and -issue11-only exclude each other")
		os.Exit(2)
	}
	if *runcPath == "" || *mrtdPath == "" || *archivePath == "" || flag.NArg() != 0 || *n < 1 || *coldN < 1 || *warmup < 0 || *idleWindow <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(benchMain())
}

// errInterrupted stops the measurements after SIGINT or SIGTERM.
var errInterrupted = errors.New("interrupted")

// stopping is set by the first SIGINT/SIGTERM: no new command starts. A
// second signal kills the command under way (each runs in its own process
// group, so a terminal's Ctrl-C reaches only bench).
var (
	stopping atomic.Bool
	curMu    sync.Mutex
	cur      *exec.Cmd
)

func handleSignals() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	go func() {
		for range sigs {
			if !stopping.Swap(true) {
				fmt.Fprintln(os.Stderr, "bench: interrupted: stopping after the current run, then cleaning up (again to kill it)")
				continue
			}
			curMu.Lock()
			if cur != nil && cur.Process != nil {
				unix.Kill(-cur.Process.Pid, unix.SIGTERM)
			}
			curMu.Unlock()
		}
	}()
}

// bench holds the work directory and what the measurements share.
type bench struct {
	tmp     string
	runc    string
	mrtd    string
	archive string
	root    bool
	uid     uint32
	gid     uint32
	nofile  uint64
	logFile *os.File // stdout and stderr of every command

	runtimeDir string // mrtd's --runtime-dir, shared by every mrtd run
	cacheMain  string // warm cache of the embedded rootfs
	rootfsMain string // the tree extracted in it
	runcCached string // the runc binary mrtd extracted in it

	floorState      string // runc --root for the floor
	floorBundle     string // config.json as mrtd writes it
	floorUnconfined string // the same with --seccomp unconfined
	floorSeq        int

	pool  *poolBench   // the pool figures' state, once they started
	img   *imageBench  // the image figures' state, once they started
	keep  *keepidBench // the keep-id figures' state, once they started
	issue *issue11     // issue 11's samples, once one was measured
}

func benchMain() int {
	handleSignals()
	b := &bench{}
	var err error
	for _, p := range []struct {
		dst *string
		src string
	}{{&b.runc, *runcPath}, {&b.mrtd, *mrtdPath}, {&b.archive, *archivePath}} {
		if *p.dst, err = filepath.Abs(p.src); err == nil {
			_, err = os.Stat(*p.dst)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 2
		}
	}
	b.root = os.Geteuid() == 0
	b.uid, b.gid = uint32(os.Geteuid()), uint32(os.Getegid())
	if b.root {
		b.uid, b.gid = config.DefaultHostID, config.DefaultHostID
	}
	b.nofile = noFileLimit()
	// Detached floor containers (runc run -d) are reparented to bench,
	// which reaps them; so are the containers of an mrtd that died.
	if err := mrtdtest.SetSubreaper(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: becoming a child subreaper: %v\n", err)
		return 1
	}

	if b.tmp, err = os.MkdirTemp(*tmpParent, "mrtd-bench-"); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	defer b.cleanup()
	if err := os.Chmod(b.tmp, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if b.root {
		if err := container.CheckReachable(b.tmp, b.uid, b.gid); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v (pass -tmpdir)\n", err)
			return 1
		}
	}
	if b.logFile, err = os.Create(filepath.Join(b.tmp, "cmd.log")); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}

	if err := b.measure(); err != nil {
		if errors.Is(err, errInterrupted) {
			fmt.Fprintln(os.Stderr, "bench: interrupted")
			return 130
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

// row is one line of the result table.
type row struct {
	figure     string
	value      time.Duration
	floor      time.Duration
	floorWhat  string
	target     float64
	targetText string // "<= 1.25x"; the ratio is compared with target
	skip       string // why the row has no figure
	// faster rows report floor/value, "how many times faster than the
	// floor", over when below target.
	faster bool
}

func (b *bench) measure() error {
	applyHealthOnly()
	applyInitOnly()
	fmt.Printf("cpus: %d (GOMAXPROCS %d)\n", runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if v, err := exec.Command(b.runc, "--version").Output(); err == nil {
		fmt.Printf("runc: %s (%s)\n", firstLine(string(v)), b.runc)
	} else {
		return fmt.Errorf("%s --version: %v", b.runc, err)
	}
	if v, err := exec.Command(b.mrtd, "version").Output(); err == nil {
		fmt.Printf("mrtd: %s\n", strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(v)), "\n", "; ")), " "))
	}
	if u, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		fmt.Printf("kernel: %s", u)
	}
	fmt.Printf("running as uid %d: container root maps to uid %d; work dir %s\n", os.Geteuid(), b.uid, b.tmp)
	fmt.Printf("runs: %d per warm series, %d per cold series, %d warm-up; figures are medians\n", *n, *coldN, *warmup)
	if *issue11Only || *standbyOnly {
		return b.issue11Only()
	}
	if *poolFlag && !*imageOnly && !*keepidOnly {
		fmt.Printf("pool: workers run %q; starts of 1 and 4 workers %d runs, 16 workers %d, 64 workers %d (1 warm-up each);\n"+
			"  restart %d runs (%d warm-up), with and without seccomp; memory 3 pools each of 1 and 64 workers; idle CPU over %v\n",
			strings.Join(poolCommand, " "), *n, min(*n, 10), min(*n, 3), *n, *warmup, *idleWindow)
	}
	if keepidWanted() {
		fmt.Println(keepidSummary(b.root, b.uid))
	}
	fmt.Println()

	var rows []row
	var series []*samples
	if !*poolOnly && !*imageOnly && !*keepidOnly {
		var err error
		if rows, series, err = b.runFigures(); err != nil {
			return err
		}
	}

	// 4. Images.
	if *imageFlag && !*poolOnly && !*keepidOnly {
		if b.runcCached == "" {
			if err := b.setup(); err != nil {
				return err
			}
		}
		imgRows, imgSeries, err := b.imageFigures()
		if err != nil {
			return err
		}
		rows = append(rows, imgRows...)
		series = append(series, imgSeries...)
	}

	// 5. The pool.
	var res []resRow
	if *poolFlag && !*imageOnly && !*keepidOnly {
		poolRows, poolRes, poolSeries, err := b.poolFigures()
		if err != nil {
			return err
		}
		rows = append(rows, poolRows...)
		res = poolRes
		series = append(series, poolSeries...)
	}

	// 5b. Health checks and the restart after a first failure (health.go).
	if healthWanted() {
		hRows, hRes, hSeries, err := b.healthFigures()
		if err != nil {
			return err
		}
		rows, res, series = append(rows, hRows...), append(res, hRes...), append(series, hSeries...)
	}

	// 5c. --init's memory (init.go).
	if initWanted() {
		initRes, err := b.initFigures()
		if err != nil {
			return err
		}
		res = append(res, initRes...)
	}

	// 5d. --standby (standby.go).
	if standbyWanted() {
		sRows, sRes, sSeries, err := b.standbyFigures()
		if err != nil {
			return err
		}
		rows, res, series = append(rows, sRows...), append(res, sRes...), append(series, sSeries...)
	}

	// 6. --user (keep-id).
	if keepidWanted() {
		keepRows, keepSeries, err := b.keepidFigures()
		if err != nil {
			return err
		}
		rows = append(rows, keepRows...)
		series = append(series, keepSeries...)
	}

	printTable(rows)
	if !*poolOnly {
		b.noteExt4()
	}
	if len(res) > 0 {
		fmt.Println()
		printResTable(res)
	}
	if b.issue != nil {
		fmt.Println()
		b.printIssue11()
	}
	printSeries(series)
	return nil
}

// printSeries prints every series' spread.
func printSeries(series []*samples) {
	fmt.Println()
	fmt.Println("series (ms)                                   n     min  median     p90     max")
	for _, s := range series {
		s.print()
	}
}

// noteExt4 says, when the work directory is on ext4 without a journal,
// why its cold-extraction figures may vary from run to run.
func (b *bench) noteExt4() {
	if dev, ok := ext4NoJournal(b.tmp); ok {
		fmt.Printf("note: %s is on ext4 without a journal (%s): for 1 to 6 minutes after many files are\n"+
			"  deleted (an earlier bench run, tests), creating files there is several times slower\n"+
			"  (ext4's recently_deleted), which inflates both sides of the cold-extraction rows alike.\n", tmpRoot(), dev)
	}
}

// keepidWanted reports whether the keep-id figures are to be measured.
func keepidWanted() bool {
	return *keepidOnly || (*keepidFlag && !*poolOnly && !*imageOnly)
}

// runFigures measures the figures of `mrtd run`: warm start, cold
// extraction, proportionality.
func (b *bench) runFigures() ([]row, []*samples, error) {
	if err := b.setup(); err != nil {
		return nil, nil, err
	}
	var rows []row
	var out []*samples

	// 1. Warm start vs. raw runc.
	fmt.Fprintln(os.Stderr, "bench: warm start vs. runc run ...")
	// The same without seccomp: libseccomp compiling the default profile
	// in runc init is most of a start, and hides mrtd's own share.
	mrtdWarm := &samples{name: "mrtd run -- /bin/true (warm)"}
	runcWarm := &samples{name: "runc run (same config.json)"}
	mrtdUnconf := &samples{name: "mrtd run --seccomp unconfined (warm)"}
	runcUnconf := &samples{name: "runc run (same, no seccomp)"}
	// The same at debug level, which logs "starting container" just
	// before runc run: where mrtd's time goes.
	mrtdDebug := &samples{name: "mrtd run --log-level debug (warm)"}
	debugSetup := &samples{name: "mrtd run: until 'starting container'"}
	ss := []series{
		series2(mrtdWarm, func() (time.Duration, error) { return b.mrtdRun(b.cacheMain) }),
		series2(runcWarm, func() (time.Duration, error) { return b.floorRun(b.floorBundle) }),
		series2(mrtdDebug, func() (time.Duration, error) {
			start := time.Now()
			t, err := b.mrtdRun(b.cacheMain, "--log-level", "debug")
			if err != nil {
				return 0, err
			}
			if at, ok := b.loggedTime("starting container"); ok {
				debugSetup.add(at.Sub(start))
			}
			return t, nil
		}),
	}
	if !*issue11Only {
		ss = append(ss,
			series2(mrtdUnconf, func() (time.Duration, error) {
				return b.mrtdRun(b.cacheMain, "--seccomp", config.SeccompUnconfined)
			}),
			series2(runcUnconf, func() (time.Duration, error) { return b.floorRun(b.floorUnconfined) }),
		)
	}
	if err := interleave(*warmup, *n, ss...); err != nil {
		return nil, nil, err
	}
	// The warm-up rounds logged too.
	debugSetup.d = debugSetup.d[max(0, len(debugSetup.d)-*n):]
	i := b.i11()
	i.warm, i.warmFloor, i.warmDebug, i.warmSetup = mrtdWarm, runcWarm, mrtdDebug, debugSetup
	out = append(out, mrtdWarm, runcWarm, mrtdDebug, debugSetup)
	rows = append(rows, row{
		figure: "warm start, /bin/true", value: mrtdWarm.median(),
		floor: runcWarm.median(), floorWhat: "runc run",
		target: 1.25, targetText: "<= 1.25x",
	})
	if !*issue11Only {
		out = append(out, mrtdUnconf, runcUnconf)
		rows = append(rows, row{
			figure: "warm start, no seccomp", value: mrtdUnconf.median(),
			floor: runcUnconf.median(), floorWhat: "runc run, no seccomp",
			targetText: "(info)",
		})
	}

	// 2. Cold extraction vs. zstd | tar.
	fmt.Fprintln(os.Stderr, "bench: cold extraction vs. zstd -dc | tar -x ...")
	coldRows, coldSeries, err := b.cold(mrtdWarm.median(), runcWarm.median())
	if err != nil {
		return nil, nil, err
	}
	rows = append(rows, coldRows...)
	out = append(out, coldSeries...)

	// 3. Warm start proportional to the rootfs size?
	fmt.Fprintln(os.Stderr, "bench: warm start, large vs. tiny rootfs ...")
	propRows, propSeries, err := b.proportionality()
	if err != nil {
		return nil, nil, err
	}
	rows = append(rows, propRows...)
	out = append(out, propSeries...)
	return rows, out, nil
}

// setup warms mrtd's cache with the embedded rootfs and writes the floor's
// bundle.
func (b *bench) setup() error {
	b.runtimeDir = filepath.Join(b.tmp, "run")
	b.cacheMain = filepath.Join(b.tmp, "cache-embedded")
	if _, err := b.mrtdRun(b.cacheMain); err != nil {
		return fmt.Errorf("first mrtd run (extracting the embedded rootfs): %w", err)
	}
	var err error
	if b.rootfsMain, err = onlyTree(filepath.Join(b.cacheMain, "rootfs")); err != nil {
		return err
	}
	ents, err := os.ReadDir(b.cacheMain)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "runc-") && !strings.HasSuffix(e.Name(), ".lock") {
			b.runcCached = filepath.Join(b.cacheMain, e.Name())
		}
	}
	if b.runcCached == "" {
		return fmt.Errorf("no runc binary in %s after a run", b.cacheMain)
	}
	if same, err := sameContent(b.runcCached, b.runc); err == nil && !same {
		fmt.Printf("note: mrtd's embedded runc differs from %s: the warm-start floor runs a different runc\n\n", b.runc)
	}

	b.floorState = filepath.Join(b.tmp, "floor-state")
	if err := os.Mkdir(b.floorState, 0o700); err != nil {
		return err
	}
	b.floorBundle = filepath.Join(b.tmp, "floor-bundle")
	b.floorUnconfined = filepath.Join(b.tmp, "floor-bundle-unconfined")
	for _, bundle := range []string{b.floorBundle, b.floorUnconfined} {
		// What mrtd run passes to container.Spec (cmd/mrtd/run.go), with
		// the flags' defaults.
		spec, err := container.Spec("bench-floor", container.Options{
			Rootfs:            b.rootfsMain,
			Args:              []string{"/bin/true"},
			UID:               b.uid,
			GID:               b.gid,
			Network:           config.NetworkHost,
			SeccompUnconfined: bundle == b.floorUnconfined,
			NoFile:            b.nofile,
		})
		if err != nil {
			return err
		}
		data, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		if err := os.Mkdir(bundle, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// onlyTree returns the only directory under dir whose name does not start
// with a dot.
func onlyTree(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var found []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			found = append(found, filepath.Join(dir, e.Name()))
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("expected one rootfs tree in %s, found %d", dir, len(found))
	}
	return found[0], nil
}

// mrtdRun times one `mrtd run` of /bin/true.
func (b *bench) mrtdRun(cache string, extra ...string) (time.Duration, error) {
	args := append([]string{"run", "--cache-dir", cache, "--runtime-dir", b.runtimeDir}, extra...)
	args = append(args, "--", "/bin/true")
	return b.timeCmd(b.mrtd, args...)
}

// floorRun times one raw `runc run` of a floor bundle.
func (b *bench) floorRun(bundle string) (time.Duration, error) {
	b.floorSeq++
	id := fmt.Sprintf("bench-%d-%d", os.Getpid(), b.floorSeq)
	return b.timeCmd(b.runc, "--root", b.floorState, "run", "--bundle", bundle, id)
}

// timeCmd runs a command with stdin from /dev/null and its output in
// b.logFile, and returns how long it took. It fails when the command does
// not exit 0.
func (b *bench) timeCmd(name string, args ...string) (time.Duration, error) {
	return b.timeExec(exec.Command(name, args...))
}

// timeExec is timeCmd for a prepared command, whose stdout and stderr are
// not set.
func (b *bench) timeExec(cmd *exec.Cmd) (time.Duration, error) {
	if stopping.Load() {
		return 0, errInterrupted
	}
	if *verbose {
		fmt.Fprintf(os.Stderr, "+ %s\n", strings.Join(cmd.Args, " "))
	}
	if err := b.logFile.Truncate(0); err != nil {
		return 0, err
	}
	if _, err := b.logFile.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	cmd.Stdout, cmd.Stderr = b.logFile, b.logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	start := time.Now()
	curMu.Lock()
	err := cmd.Start()
	cur = cmd
	curMu.Unlock()
	if err == nil {
		err = cmd.Wait()
	}
	d := time.Since(start)
	curMu.Lock()
	cur = nil
	curMu.Unlock()
	if err != nil {
		if stopping.Load() {
			return 0, errInterrupted
		}
		out, _ := os.ReadFile(b.logFile.Name())
		return 0, fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return d, nil
}

// cold measures extraction into a fresh cache. mrtdWarm is the warm-start
// median it subtracts; runcWarm is the floor of a warm start.
func (b *bench) cold(mrtdWarm, runcWarm time.Duration) ([]row, []*samples, error) {
	zstdBin, zerr := exec.LookPath("zstd")
	tarBin, terr := exec.LookPath("tar")
	if zerr != nil || terr != nil {
		missing := "zstd"
		if zerr == nil {
			missing = "tar"
		}
		fmt.Fprintf(os.Stderr, "bench: no %s on this host: the extraction floor cannot be measured\n", missing)
		return []row{{figure: "cold extraction", skip: "no " + missing + " on this host: floor not measured"}}, nil, nil
	}

	// Fresh cache with the runc binary already in it (hardlinked), so that
	// only the rootfs is extracted.
	coldRootfs := &samples{name: "mrtd run, fresh cache (runc cached)"}
	// Fresh, empty cache: runc written too, as on a first run.
	coldEmpty := &samples{name: "mrtd run, empty cache"}
	// What mrtd logs as the extraction's duration.
	logged := &samples{name: "mrtd's logged extraction duration"}
	floor := &samples{name: "zstd -dc | tar -x"}
	// Each run extracts into a new directory. The trees are removed only
	// at the very end, with the work directory: on ext4 without a journal,
	// inode allocation skips inodes deleted in the last 60 s (360 s while
	// their inode table block is dirty) one by one (ext4's
	// recently_deleted), so after a 4000-file tree is deleted, creating
	// files is several times slower: removing each tree would inflate every
	// extraction after the first. When the disk is short of room, they go
	// at once.
	keep := true
	var st unix.Statfs_t
	need := uint64(3*(*coldN+1)) * uint64(treeSize(b.rootfsMain)) * 5 / 4
	if err := unix.Statfs(b.tmp, &st); err == nil && st.Bavail*uint64(st.Bsize) < need+(1<<30) {
		keep = false
		fmt.Printf("note: not enough room to keep the cold trees (%s needed): removing each after its run; expect slower extractions on ext4 without a journal\n\n", mb(int64(need)))
	}
	seq := 0
	fresh := func() (string, error) {
		seq++
		d := filepath.Join(b.tmp, fmt.Sprintf("cold-%d", seq))
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
		return d, os.Chmod(d, 0o755)
	}
	done := func(d string) {
		if !keep {
			rootfs.RemoveTree(d)
		}
	}
	// Each sample starts with nothing dirty in the page cache: mrtd
	// syncs the filesystem before it publishes a tree (syncfs), which
	// would otherwise also write back what the sample before it left
	// dirty (the floor never syncs).
	settle := func() error {
		if stopping.Load() {
			return errInterrupted
		}
		unix.Sync()
		return nil
	}
	// What mrtd logs as the extraction's duration on a first run.
	loggedEmpty := &samples{name: "mrtd's logged extraction, empty cache"}
	// A syncfs after the floor: what making its tree durable takes.
	floorSync := &samples{name: "syncfs after zstd -dc | tar -x"}
	checked := false
	ss := []series{
		series2(coldEmpty, func() (time.Duration, error) {
			d, err := fresh()
			if err == nil {
				err = settle()
			}
			if err != nil {
				return 0, err
			}
			defer done(d)
			t, err := b.mrtdRun(filepath.Join(d, "cache"))
			if err != nil {
				return 0, err
			}
			if ld, ok := b.loggedExtraction(); ok {
				loggedEmpty.add(ld)
			}
			return t, nil
		}),
		series2(floor, func() (time.Duration, error) {
			d, err := fresh()
			if err == nil {
				err = settle()
			}
			if err != nil {
				return 0, err
			}
			defer done(d)
			t, err := b.timeCmd("sh", "-c", `"$1" -dc -- "$2" | "$3" -xf - -C "$4"`, "sh", zstdBin, b.archive, tarBin, d)
			if err != nil {
				return 0, err
			}
			// What mrtd does beside: the tree on disk (publish's
			// syncfs), timed apart.
			st, err := syncfsTime(d)
			if err != nil {
				return 0, err
			}
			floorSync.add(st)
			if !checked {
				// The pipeline's status is tar's: check zstd's work
				// by comparing the trees once.
				checked = true
				got, want := countEntries(d), countEntries(b.rootfsMain)
				if got < want*9/10 {
					return 0, fmt.Errorf("zstd -dc %s | tar -x gave %d entries, mrtd's tree has %d", b.archive, got, want)
				}
			}
			return t, nil
		}),
	}
	if !*issue11Only {
		ss = append(ss, series2(coldRootfs, func() (time.Duration, error) {
			d, err := fresh()
			if err == nil {
				err = settle()
			}
			if err != nil {
				return 0, err
			}
			defer done(d)
			cache := filepath.Join(d, "cache")
			if err := os.Mkdir(cache, 0o711); err != nil {
				return 0, err
			}
			if err := os.Link(b.runcCached, filepath.Join(cache, filepath.Base(b.runcCached))); err != nil {
				return 0, err
			}
			t, err := b.mrtdRun(cache)
			if err != nil {
				return 0, err
			}
			if ld, ok := b.loggedExtraction(); ok {
				logged.add(ld)
			}
			return t, nil
		}))
	}
	if err := interleave(1, *coldN, ss...); err != nil {
		return nil, nil, err
	}
	// The warm-up pass logged one extraction too.
	for _, l := range []*samples{logged, loggedEmpty, floorSync} {
		if len(l.d) > *coldN {
			l.d = l.d[len(l.d)-*coldN:]
		}
	}
	i := b.i11()
	i.cold, i.coldFloor, i.coldLogged, i.coldFloorSync, i.coldWarm = coldEmpty, floor, loggedEmpty, floorSync, mrtdWarm
	if *issue11Only {
		return []row{{
			figure: "first run, empty cache", value: coldEmpty.median(),
			floor: floor.median(), floorWhat: "zstd -dc | tar -x",
			target: 1.5, targetText: "<= 1.5x",
		}}, []*samples{coldEmpty, loggedEmpty, floor, floorSync}, nil
	}
	rows := []row{{
		figure: "cold extraction (run - warm run)", value: coldRootfs.median() - mrtdWarm,
		floor: floor.median(), floorWhat: "zstd -dc | tar -x",
		target: 1.5, targetText: "<= 1.5x",
	}}
	if len(logged.d) > 0 {
		rows = append(rows, row{
			figure: "cold extraction (mrtd's log)", value: logged.median(),
			floor: floor.median(), floorWhat: "zstd -dc | tar -x",
			target: 1.5, targetText: "<= 1.5x",
		})
	}
	rows = append(rows, row{
		figure: "first run, empty cache", value: coldEmpty.median(),
		floor: floor.median() + runcWarm, floorWhat: "zstd | tar, then runc run",
		targetText: "-",
	})
	return rows, []*samples{coldRootfs, coldEmpty, logged, loggedEmpty, floor, floorSync}, nil
}

// syncfsTime times a syncfs of the filesystem holding dir.
func syncfsTime(dir string) (time.Duration, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	start := time.Now()
	err = unix.Syncfs(int(f.Fd()))
	return time.Since(start), err
}

// loggedExtraction reads the extraction time mrtd logged on its last run.
func (b *bench) loggedExtraction() (time.Duration, bool) {
	return b.loggedDuration("rootfs extracted")
}

// loggedTime reads the time of the first log line msg of mrtd's last
// run (mrtd's clock, the same wall clock as bench's).
func (b *bench) loggedTime(msg string) (time.Time, bool) {
	f, err := os.Open(b.logFile.Name())
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Msg  string    `json:"msg"`
			Time time.Time `json:"time"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg == msg && !e.Time.IsZero() {
			return e.Time, true
		}
	}
	return time.Time{}, false
}

// loggedDuration reads the duration of the first log line msg of mrtd's
// last run.
func (b *bench) loggedDuration(msg string) (time.Duration, bool) {
	ds := b.loggedDurations(msg)
	if len(ds) == 0 {
		return 0, false
	}
	return ds[0], true
}

// loggedDurations reads the durations of every log line msg of mrtd's
// last run.
func (b *bench) loggedDurations(msg string) []time.Duration {
	f, err := os.Open(b.logFile.Name())
	if err != nil {
		return nil
	}
	defer f.Close()
	var ds []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Msg      string `json:"msg"`
			Duration string `json:"duration"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg == msg {
			if d, err := time.ParseDuration(e.Duration); err == nil {
				ds = append(ds, d)
			}
		}
	}
	return ds
}

// proportionality compares warm starts with rootfs trees of very different
// sizes, and with the same tree passed as a directory; and a warm start
// with --rootfs ARCHIVE (the archive mrtd embeds, as a file) with the same
// tree passed as a directory (issue 11). With -issue11-only, only the
// latter.
func (b *bench) proportionality() ([]row, []*samples, error) {
	// Each variant gets its own cache: every mrtd run prunes the cache
	// entries it is not using, so variants sharing a cache would
	// re-extract (or, for a --rootfs directory inside the cache, delete
	// the tree in use).
	cacheTiny := filepath.Join(b.tmp, "cache-tiny")
	cacheDir := filepath.Join(b.tmp, "cache-dirmode")
	cacheArch := filepath.Join(b.tmp, "cache-archive")
	for _, c := range []string{cacheTiny, cacheDir, cacheArch} {
		if err := os.Mkdir(c, 0o711); err != nil {
			return nil, nil, err
		}
		if err := os.Link(b.runcCached, filepath.Join(c, filepath.Base(b.runcCached))); err != nil {
			return nil, nil, err
		}
	}
	// The archive's tree, extracted once (unmeasured): the same tree as
	// the embedded one when mrtd embeds this archive.
	if _, err := b.mrtdRun(cacheArch, "--rootfs", b.archive); err != nil {
		return nil, nil, fmt.Errorf("first mrtd run --rootfs %s: %w", b.archive, err)
	}
	archTree, err := onlyTree(filepath.Join(cacheArch, "rootfs"))
	if err != nil {
		return nil, nil, err
	}
	arch := &samples{name: "mrtd run --rootfs x.tar.zst (warm)"}
	archDir := &samples{name: "mrtd run --rootfs DIR (that tree)"}
	// Both again at debug level, for their setups (until "starting
	// container"): the part of a start that differs between them.
	archSetup := &samples{name: "--rootfs x.tar.zst: 'starting container'"}
	dirSetup := &samples{name: "--rootfs DIR: 'starting container'"}
	debugRun := func(setup *samples, cache string, args ...string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			start := time.Now()
			t, err := b.mrtdRun(cache, append([]string{"--log-level", "debug"}, args...)...)
			if err != nil {
				return 0, err
			}
			if at, ok := b.loggedTime("starting container"); ok {
				setup.add(at.Sub(start))
			}
			return t, nil
		}
	}
	var discard samples // the debug runs' own times
	ss := []series{
		series2(arch, func() (time.Duration, error) { return b.mrtdRun(cacheArch, "--rootfs", b.archive) }),
		series2(archDir, func() (time.Duration, error) { return b.mrtdRun(cacheDir, "--rootfs", archTree) }),
		series2(&discard, debugRun(archSetup, cacheArch, "--rootfs", b.archive)),
		series2(&discard, debugRun(dirSetup, cacheDir, "--rootfs", archTree)),
	}
	big := &samples{name: "mrtd run, embedded rootfs (warm)"}
	small := &samples{name: "mrtd run --rootfs tiny.tar.zst (warm)"}
	dir := archDir // the embedded tree as a directory
	var tinySize int64
	if !*issue11Only {
		if filepath.Base(archTree) != filepath.Base(b.rootfsMain) {
			// mrtd embeds another tree (make ROOTFS_IMAGE=...).
			dir = &samples{name: "mrtd run --rootfs DIR (embedded tree)"}
			ss = append(ss, series2(dir, func() (time.Duration, error) { return b.mrtdRun(cacheDir, "--rootfs", b.rootfsMain) }))
		}
		tiny, size, err := b.tinyArchive()
		if err != nil {
			return nil, nil, fmt.Errorf("building the tiny rootfs: %w", err)
		}
		tinySize = size
		ss = append(ss,
			series2(big, func() (time.Duration, error) { return b.mrtdRun(b.cacheMain) }),
			series2(small, func() (time.Duration, error) { return b.mrtdRun(cacheTiny, "--rootfs", tiny) }),
		)
	}
	if err := interleave(*warmup, *n, ss...); err != nil {
		return nil, nil, err
	}
	// The warm-up rounds logged too.
	archSetup.d = archSetup.d[max(0, len(archSetup.d)-*n):]
	dirSetup.d = dirSetup.d[max(0, len(dirSetup.d)-*n):]
	i := b.i11()
	i.archive, i.archiveFloor, i.archiveSetup, i.archiveFloorSetup = arch, archDir, archSetup, dirSetup
	rows := []row{{
		figure: "warm start --rootfs x.tar.zst vs dir", value: arch.median(),
		floor: archDir.median(), floorWhat: "--rootfs DIR, same tree",
		target: 1.02, targetText: "<= 1.02x",
	}}
	out := []*samples{arch, archDir, archSetup, dirSetup}
	if *issue11Only {
		return rows, out, nil
	}
	if archDir != dir {
		out = append(out, dir)
	}
	rows = append(rows,
		row{
			figure: fmt.Sprintf("warm start %s vs tiny", mb(treeSize(b.rootfsMain))), value: big.median(),
			floor: small.median(), floorWhat: fmt.Sprintf("tiny .tar.zst, %s", mb(tinySize)),
			target: 1.1, targetText: "~1.00x",
		},
		row{
			figure: "warm start embedded vs dir", value: big.median(),
			floor: dir.median(), floorWhat: "--rootfs DIR, same tree",
			target: 1.1, targetText: "~1.00x",
		},
	)
	return rows, append(out, big, small), nil
}

// tinyArchive builds a rootfs holding only a static /bin/true and the mount
// points, packed as tar.zst, and returns its path and the tree's size.
func (b *bench) tinyArchive() (string, int64, error) {
	src := filepath.Join(b.tmp, "tiny-src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return "", 0, err
	}
	main := filepath.Join(src, "true.go")
	if err := os.WriteFile(main, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		return "", 0, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		if g := os.Getenv("GOROOT"); g != "" {
			goBin = filepath.Join(g, "bin", "go")
		} else {
			return "", 0, errors.New("no go command in PATH")
		}
	}
	bin := filepath.Join(src, "true")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, main)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", 0, fmt.Errorf("go build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", 0, err
	}

	p := filepath.Join(b.tmp, "tiny.tar.zst")
	f, err := os.Create(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	zw, err := zstd.NewWriter(f)
	if err != nil {
		return "", 0, err
	}
	tw := tar.NewWriter(zw)
	mtime := time.Unix(0, 0)
	for _, d := range []string{"bin/", "dev/", "proc/", "run/", "sys/", "tmp/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return "", 0, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/true", Mode: 0o755, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
		return "", 0, err
	}
	if _, err := tw.Write(data); err != nil {
		return "", 0, err
	}
	if err := tw.Close(); err != nil {
		return "", 0, err
	}
	if err := zw.Close(); err != nil {
		return "", 0, err
	}
	return p, int64(len(data)), f.Close()
}

// cleanup removes every container left in the runc state directories, then
// the work directory.
func (b *bench) cleanup() {
	if b.logFile != nil {
		b.logFile.Close()
	}
	if b.img != nil && b.img.registry != nil {
		b.img.registry.Stop()
	}
	if b.keep != nil {
		b.keep.cleanup()
	}
	states := []string{b.floorState, filepath.Join(b.runtimeDir, "runc")}
	if b.pool != nil {
		b.pool.cleanupPool()
		states = append(states, b.pool.rawState, filepath.Join(b.pool.runtime, "runc"))
	}
	var left []string
	for _, state := range states {
		if state == "" || state == "runc" {
			continue
		}
		ents, err := os.ReadDir(state)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			left = append(left, e.Name())
			exec.Command(b.runc, "--root", state, "delete", "--force", e.Name()).Run()
		}
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "bench: removed containers left in runc's state: %v\n", left)
	}
	// Inits of containers removed above, reparented to bench.
	time.Sleep(100 * time.Millisecond)
	mrtdtest.ReapAll()
	if err := rootfs.RemoveTree(b.tmp); err != nil {
		fmt.Fprintf(os.Stderr, "bench: removing %s: %v\n", b.tmp, err)
	}
}

// series is one thing to time, and where its samples go.
type series struct {
	s   *samples
	run func() (time.Duration, error)
}

func series2(s *samples, run func() (time.Duration, error)) series {
	return series{s, run}
}

// interleave runs warm unmeasured rounds, then n measured ones; each round
// runs every series once, rotating the order from round to round so that
// no series always follows the same one.
func interleave(warm, n int, ss ...series) error {
	for i := 0; i < warm+n; i++ {
		for j := range ss {
			s := ss[(i+j)%len(ss)]
			d, err := s.run()
			if err != nil {
				return err
			}
			if i >= warm {
				s.s.add(d)
			}
		}
	}
	return nil
}

// samples is a series of timings.
type samples struct {
	name string
	d    []time.Duration
}

func (s *samples) add(d time.Duration) { s.d = append(s.d, d) }

func (s *samples) sorted() []time.Duration {
	c := slices.Clone(s.d)
	slices.Sort(c)
	return c
}

func (s *samples) median() time.Duration {
	c := s.sorted()
	if len(c) == 0 {
		return 0
	}
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

func (s *samples) quantile(q float64) time.Duration {
	c := s.sorted()
	if len(c) == 0 {
		return 0
	}
	i := int(q*float64(len(c)-1) + 0.5)
	return c[i]
}

func (s *samples) print() {
	if len(s.d) == 0 {
		return
	}
	c := s.sorted()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Printf("  %-42s %3d %7.1f %7.1f %7.1f %7.1f\n", s.name, len(c), ms(c[0]), ms(s.median()), ms(s.quantile(0.9)), ms(c[len(c)-1]))
}

func printTable(rows []row) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "figure\tmrtd\tfloor (what)\tratio\ttarget\t")
	for _, r := range rows {
		if r.skip != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\t\n", r.figure, r.skip)
			continue
		}
		ratio := float64(r.value) / float64(r.floor)
		mark := ""
		if r.faster {
			ratio = 1 / ratio
			if ratio < r.target {
				mark = "  (over)"
			}
		} else if r.target > 0 && ratio > r.target {
			mark = "  (over)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s (%s)\t%.2fx\t%s%s\t\n", r.figure, ms(r.value), ms(r.floor), r.floorWhat, ratio, r.targetText, mark)
	}
	tw.Flush()
	fmt.Println("(~1.00x: over when above 1.10x)")
}

func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10 && v > -10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100 && v > -100:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.0f ms", v)
	}
}

func mb(n int64) string {
	if n >= 10<<20 {
		return fmt.Sprintf("%.0fMB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1fMB", float64(n)/(1<<20))
}

// noFileLimit is what mrtd gives containers as RLIMIT_NOFILE (noFileLimit
// in cmd/mrtd/run.go): its hard limit, capped at 1M. mrtd is bench's child
// and inherits the same limit.
func noFileLimit() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Max == 0 {
		return 1024
	}
	return min(rl.Max, 1<<20)
}

// tmpRoot is where the work directory is created.
func tmpRoot() string {
	if *tmpParent != "" {
		return *tmpParent
	}
	return os.TempDir()
}

// ext4NoJournal reports whether dir is on an ext4 filesystem without a
// journal, and its device.
func ext4NoJournal(dir string) (string, bool) {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", false
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	best, fstype, source := "", "", ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 0 || len(f) < sep+3 {
			continue
		}
		mp := f[4]
		if (dir == mp || mp == "/" || strings.HasPrefix(dir, mp+"/")) && len(mp) >= len(best) {
			best, fstype, source = mp, f[sep+1], f[sep+2]
		}
	}
	if fstype != "ext4" {
		return "", false
	}
	j, err := os.ReadFile(filepath.Join("/sys/fs/ext4", filepath.Base(source), "journal_task"))
	return source, err == nil && strings.TrimSpace(string(j)) == "<none>"
}

func treeSize(root string) int64 {
	var total int64
	filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}

func countEntries(root string) int {
	count := 0
	filepath.WalkDir(root, func(_ string, _ fs.DirEntry, err error) error {
		if err == nil {
			count++
		}
		return nil
	})
	return count
}

func sameContent(a, b string) (bool, error) {
	da, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	db, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(da, db), nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}
