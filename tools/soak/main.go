// Command soak runs `mrtd --workers N` and, for a while, SIGKILLs random
// container inits (now and then two at once), checking after each kill that
// all N workers run again within a few seconds:
//
//	go run ./tools/soak -mrtd bin/mrtd [-workers 8] [-duration 3m] [-standby]
//
// At the end it stops mrtd with SIGTERM and reports the restarts done, the
// failures to restore N workers, mrtd's open fds at the start and at the end
// (both while all N workers run), zombie children of mrtd, processes leaked
// after mrtd exited (container inits still alive, orphans reparented to
// soak, which is a child subreaper for that reason) and runc state left.
//
// It exits 1 when the soak could not run (mrtd did not start, or died), or
// when processes, fds, runc state or bundles leaked; timing figures
// (failures to restore in time) are reported, never enforced. Usage errors
// exit 2. With -standby, mrtd keeps a standby container per worker, and the
// report says how many restarts one served.
package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/internal/mrtdtest"
	"github.com/mrt-project/mrt/rootfs"
)

var (
	mrtdPath       = flag.String("mrtd", "", "the mrtd `binary` to soak")
	workers        = flag.Int("workers", 8, "`N` workers")
	duration       = flag.Duration("duration", 3*time.Minute, "how long to keep killing workers")
	instance       = flag.String("instance", "soak", "mrtd's --instance")
	backoffMin     = flag.Duration("backoff-min", 50*time.Millisecond, "mrtd's --backoff-min")
	backoffMax     = flag.Duration("backoff-max", time.Second, "mrtd's --backoff-max (keep it well under -restore-timeout: a worker killed again and again backs off up to it)")
	stopTimeout    = flag.Duration("stop-timeout", 2*time.Second, "mrtd's --stop-timeout (sleep, as pid 1, ignores SIGTERM: each worker is killed after it)")
	restoreTimeout = flag.Duration("restore-timeout", 5*time.Second, "how long N workers get to run again after a kill")
	pauseMax       = flag.Duration("pause", 500*time.Millisecond, "longest random pause between kills")
	doubleEvery    = flag.Int("double", 5, "kill two workers at once about one time in `K`")
	cacheDir       = flag.String("cache-dir", "", "mrtd's --cache-dir (default: a fresh one in the work dir)")
	tmpParent      = flag.String("tmpdir", "", "create the work directory under `DIR` (default: $TMPDIR or /tmp); as root, uid 65534 must be able to traverse it")
	seed           = flag.Uint64("seed", 0, "random `seed` (default: from the time)")
	verbose        = flag.Bool("v", false, "print every kill")
	standby        = flag.Bool("standby", false, "run mrtd with --standby: restarts start the standby container kept for each worker")
)

// command is every worker's command: in the default rootfs, and it ignores
// SIGTERM as a container's pid 1, so the stop path's SIGKILL is exercised.
var command = []string{"sleep", "infinity"}

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: soak -mrtd MRTD [-workers N] [-duration D]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *mrtdPath == "" || flag.NArg() != 0 || *workers < 1 || *duration <= 0 || *restoreTimeout <= 0 || *pauseMax < 0 || *doubleEvery < 1 {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(soakMain())
}

var interrupted atomic.Bool

// soak is one soak run.
type soak struct {
	tmp, cache, runtime string
	logPath             string
	d                   *mrtdtest.Daemon
	rnd                 *rand.Rand

	kills, doubles    int // kill rounds, and of those with two victims
	killed            int // inits killed
	vanished          int // victims gone before the signal
	failures          int // kill rounds after which N did not run again in time
	failureNotes      []string
	restore           []time.Duration // kill to N running again
	restoreWork       []time.Duration // the same minus the longest backoff logged
	fdStart, fdEnd    int
	zombies           []string
	leaked            []string
	stateLeft         []string
	bundlesLeft       []string
	stopErr           error
	stopTook          time.Duration
	unexpectedExits   int
	restartsLogged    int
	fromStandby       int // restarts the log says a standby served
	restartsPerWorker map[int]int
	collected         bool // what mrtd left was looked for
	hasStatus         bool // mrtd logs its status on SIGUSR1
	statusStart       mrtdtest.Status
	statusEnd         mrtdtest.Status
	statusErr         error
}

func soakMain() int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	go func() {
		for range sigs {
			if !interrupted.Swap(true) {
				fmt.Fprintln(os.Stderr, "soak: interrupted: stopping the kills, then reporting")
			}
		}
	}()

	bin, err := filepath.Abs(*mrtdPath)
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 2
	}
	// Inits of containers that outlive mrtd are reparented to soak: they
	// are the leaks it looks for.
	if err := mrtdtest.SetSubreaper(); err != nil {
		fmt.Fprintf(os.Stderr, "soak: becoming a child subreaper: %v\n", err)
		return 1
	}
	s := &soak{}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	s.rnd = rand.New(rand.NewPCG(*seed, 0x50a4))
	if s.tmp, err = os.MkdirTemp(*tmpParent, "mrtd-soak-"); err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 1
	}
	keep := false
	defer func() {
		if !keep {
			if err := rootfs.RemoveTree(s.tmp); err != nil {
				fmt.Fprintf(os.Stderr, "soak: removing %s: %v\n", s.tmp, err)
			}
		}
	}()
	if err := os.Chmod(s.tmp, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 1
	}
	s.cache = *cacheDir
	if s.cache == "" {
		s.cache = filepath.Join(s.tmp, "cache")
	}
	s.runtime = filepath.Join(s.tmp, "run")
	s.logPath = filepath.Join(s.tmp, "mrtd.log")

	ran, err := s.run(bin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
	}
	correct := s.check()
	if ran {
		s.report()
	}
	if err != nil || !correct {
		keep = true
		fmt.Printf("\nsoak: FAILED; mrtd's log and the work dir are kept: %s\n", s.logPath)
		return 1
	}
	return 0
}

// run starts mrtd, kills workers for -duration, and stops mrtd. It reports
// whether the kills ran.
func (s *soak) run(bin string) (bool, error) {
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return false, err
	}
	defer logFile.Close()
	args := []string{
		"--workers", strconv.Itoa(*workers), "--instance", *instance,
		"--cache-dir", s.cache, "--runtime-dir", s.runtime,
		"--backoff-min", backoffMin.String(), "--backoff-max", backoffMax.String(),
		"--stop-timeout", stopTimeout.String(),
	}
	if *standby {
		args = append(args, "--standby")
	}
	args = append(args, "--")
	args = append(args, command...)
	fmt.Printf("soak: %s %s\n", bin, strings.Join(args, " "))
	fmt.Printf("soak: %d workers for %v; random pauses up to %v; two at once about 1 kill in %d; seed %d\n",
		*workers, *duration, *pauseMax, *doubleEvery, *seed)
	s.d, err = mrtdtest.Start(mrtdtest.Command(bin, args...), mrtdtest.Options{CopyTo: logFile})
	if err != nil {
		return false, err
	}
	d := s.d
	n := *workers
	if _, err := d.WaitFor(3*time.Minute, func(st *mrtdtest.State) bool { return st.Running() == n }); err != nil {
		d.Stop(*stopTimeout + 30*time.Second)
		return false, fmt.Errorf("waiting for %d workers to run: %w", n, err)
	}
	time.Sleep(time.Second)
	if s.fdStart, err = s.settledFDs(); err != nil {
		d.Stop(*stopTimeout + 30*time.Second)
		return false, err
	}
	s.hasStatus = mrtdtest.HasStatus(bin)
	if s.hasStatus {
		if s.statusStart, err = s.settledStatus(); err != nil {
			d.Stop(*stopTimeout + 30*time.Second)
			return false, err
		}
	}
	fmt.Printf("soak: %d workers running (mrtd pid %d, %d open fds); killing ...\n", n, d.Pid, s.fdStart)

	deadline := time.Now().Add(*duration)
	lastReport := time.Now()
	var died error
	for time.Now().Before(deadline) && !interrupted.Load() {
		select {
		case <-d.Exited():
			died = fmt.Errorf("mrtd exited during the soak: %v", d.Err())
		default:
		}
		if died != nil {
			break
		}
		time.Sleep(time.Duration(s.rnd.Int64N(int64(*pauseMax) + 1)))
		s.killRound()
		if time.Since(lastReport) >= 15*time.Second && time.Until(deadline) > 0 {
			lastReport = time.Now()
			fmt.Fprintf(os.Stderr, "soak: %v left: %d kills, %d failures to restore %d\n",
				time.Until(deadline).Round(time.Second), s.kills, s.failures, n)
		}
	}
	if died != nil {
		s.collect()
		return true, died
	}

	// The end: all N running again, then fds and zombies.
	if _, err := d.WaitFor(*restoreTimeout, func(st *mrtdtest.State) bool { return st.Running() == n }); err != nil {
		fmt.Fprintf(os.Stderr, "soak: at the end, %d workers did not all run within %v: %v\n", n, *restoreTimeout, err)
	}
	time.Sleep(time.Second)
	if s.fdEnd, err = s.settledFDs(); err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
	}
	if s.hasStatus {
		s.statusEnd, s.statusErr = s.settledStatus()
	}
	s.zombies = s.persistentZombies()

	start := time.Now()
	s.stopErr = d.Stop(*stopTimeout + 30*time.Second)
	s.stopTook = time.Since(start)
	s.collect()
	return true, nil
}

// settledFDs counts mrtd's open fds once two counts 200ms apart agree (a
// runc command in flight holds pipes).
func (s *soak) settledFDs() (int, error) {
	prev := -1
	for range 25 {
		c, err := mrtdtest.FDs(s.d.Pid)
		if err != nil {
			return 0, err
		}
		if c == prev {
			return c, nil
		}
		prev = c
		time.Sleep(200 * time.Millisecond)
	}
	return prev, nil
}

// settledStatus asks mrtd for its status (SIGUSR1) until two goroutine
// counts in a row agree.
func (s *soak) settledStatus() (mrtdtest.Status, error) {
	var prev mrtdtest.Status
	for i := range 10 {
		st, err := s.d.QueryStatus(5 * time.Second)
		if err != nil {
			return st, err
		}
		if i > 0 && st.Goroutines == prev.Goroutines {
			return st, nil
		}
		prev = st
		time.Sleep(200 * time.Millisecond)
	}
	return prev, nil
}

// killRound kills one or two running workers' inits and waits for all N
// to run again.
func (s *soak) killRound() {
	d, n := s.d, *workers
	st := d.Snapshot()
	var running []int
	for w := range st.Pids {
		running = append(running, w)
	}
	slices.Sort(running)
	if len(running) == 0 {
		return
	}
	k := 1
	if len(running) >= 2 && s.rnd.IntN(*doubleEvery) == 0 {
		k = 2
	}
	s.rnd.Shuffle(len(running), func(i, j int) { running[i], running[j] = running[j], running[i] })
	victims := running[:k]
	before := map[int]int{}
	start := time.Now()
	killed := 0
	for _, w := range victims {
		pid := st.Pids[w]
		before[w] = st.Restarts[w]
		if err := killChild(pid, d.Pid); err != nil {
			if *verbose {
				fmt.Fprintf(os.Stderr, "soak: worker %d (pid %d): %v\n", w, pid, err)
			}
			s.vanished++
			delete(before, w)
			continue
		}
		killed++
		if *verbose {
			fmt.Fprintf(os.Stderr, "soak: killed worker %d (pid %d)\n", w, pid)
		}
	}
	if killed == 0 {
		return
	}
	s.kills++
	s.killed += killed
	if killed == 2 {
		s.doubles++
	}
	var backoff time.Duration
	_, err := d.WaitFor(*restoreTimeout, func(st *mrtdtest.State) bool {
		for w, r := range before {
			if _, up := st.Pids[w]; !up || st.Restarts[w] <= r {
				return false
			}
		}
		if st.Running() != n {
			return false
		}
		for w := range before {
			backoff = max(backoff, st.Backoff[w])
		}
		return true
	})
	if err == nil {
		// The log says N run: check /proc agrees, exactly N inits.
		remaining := *restoreTimeout - time.Since(start)
		err = s.checkInits(max(remaining, 500*time.Millisecond))
	}
	if err != nil {
		s.failures++
		if len(s.failureNotes) < 10 {
			s.failureNotes = append(s.failureNotes, fmt.Sprintf("kill %d (workers %v): %v", s.kills, keys(before), err))
		}
		return
	}
	took := time.Since(start)
	s.restore = append(s.restore, took)
	s.restoreWork = append(s.restoreWork, took-backoff)
}

// killChild sends SIGKILL to pid if it is a child of parent, through a
// pidfd so that a reused pid is never hit.
func killChild(pid, parent int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(fd)
	p, err := mrtdtest.ReadProc(pid)
	if err != nil || p.PPid != parent || p.State == 'Z' {
		return errors.New("no longer a live child of mrtd")
	}
	return unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// checkInits checks that mrtd has exactly the N container inits the log
// names as children, polling for up to timeout.
func (s *soak) checkInits(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := s.initsOnce()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *soak) initsOnce() error {
	st := s.d.Snapshot()
	want := map[int]bool{}
	for _, pid := range st.Pids {
		want[pid] = true
	}
	var extra []string
	found := 0
	for _, c := range mrtdtest.Children(s.d.Pid) {
		switch {
		case want[c.Pid] && c.State != 'Z':
			found++
		case strings.HasPrefix(c.Comm, "runc"):
			// runc commands and inits being started.
		default:
			extra = append(extra, fmt.Sprintf("%d %s (%c)", c.Pid, c.Comm, c.State))
		}
	}
	if found != len(want) || len(want) != *workers || len(extra) > 0 {
		return fmt.Errorf("log says %d workers run; %d of their inits are live children of mrtd; other children: %v", len(want), found, extra)
	}
	return nil
}

// persistentZombies returns mrtd's zombie children seen in two scans 500ms
// apart (a zombie in one scan is a child exiting right then).
func (s *soak) persistentZombies() []string {
	scan := func() map[int]string {
		z := map[int]string{}
		for _, c := range mrtdtest.Children(s.d.Pid) {
			if c.State == 'Z' {
				z[c.Pid] = c.Comm
			}
		}
		return z
	}
	first := scan()
	if len(first) == 0 {
		return nil
	}
	time.Sleep(500 * time.Millisecond)
	var out []string
	for pid, comm := range scan() {
		if first[pid] == comm {
			out = append(out, fmt.Sprintf("%d %s", pid, comm))
		}
	}
	return out
}

// collect gathers the counts from the log, and, once mrtd has exited, what
// it left behind.
func (s *soak) collect() {
	st := s.d.Snapshot()
	s.restartsLogged = st.RunningEvents - *workers
	if log, err := os.ReadFile(s.logPath); err == nil {
		s.fromStandby = strings.Count(string(log), `"fromStandby":true`)
	}
	s.restartsPerWorker = st.Restarts
	s.unexpectedExits = max(0, st.Exits-s.killed)
	select {
	case <-s.d.Exited():
	default:
		return
	}
	if s.collected {
		return
	}
	s.collected = true
	time.Sleep(200 * time.Millisecond)
	// Orphans reparented to soak: anything of mrtd's that outlived it.
	self := os.Getpid()
	seen := map[int]bool{}
	for _, c := range mrtdtest.Children(self) {
		seen[c.Pid] = true
		s.leaked = append(s.leaked, fmt.Sprintf("%d %q (%c), reparented to soak", c.Pid, mrtdtest.Cmdline(c.Pid), c.State))
	}
	// Container inits alive elsewhere.
	for _, pid := range st.AllPids {
		if seen[pid] || !mrtdtest.Alive(pid) {
			continue
		}
		if cl := mrtdtest.Cmdline(pid); cl == strings.Join(command, " ") {
			s.leaked = append(s.leaked, fmt.Sprintf("%d %q, a worker init", pid, cl))
		}
	}
	s.stateLeft, _ = dirNames(filepath.Join(s.runtime, "runc"))
	s.bundlesLeft, _ = dirNames(filepath.Join(s.runtime, "bundles"))
}

// check reports whether nothing leaked, then removes what did.
func (s *soak) check() bool {
	if s.d == nil {
		return true
	}
	select {
	case <-s.d.Exited():
	default:
		s.d.Stop(*stopTimeout + 30*time.Second)
	}
	s.collect()
	ok := len(s.leaked) == 0 && len(s.stateLeft) == 0 && len(s.bundlesLeft) == 0 && len(s.zombies) == 0 &&
		(s.fdEnd == 0 || s.fdEnd == s.fdStart)
	// Clean up: containers left in runc's state, then orphans.
	if len(s.stateLeft) > 0 {
		runc := cachedRunc(s.cache)
		for _, id := range s.stateLeft {
			if runc != "" {
				exec.Command(runc, "--root", filepath.Join(s.runtime, "runc"), "delete", "--force", id).Run()
			}
		}
	}
	for _, c := range mrtdtest.Children(os.Getpid()) {
		unix.Kill(c.Pid, unix.SIGKILL)
	}
	time.Sleep(100 * time.Millisecond)
	mrtdtest.ReapAll()
	return ok
}

func (s *soak) report() {
	n := *workers
	fmt.Println()
	fmt.Printf("kills: %d rounds (%d of two at once), %d inits killed; %d victims already gone\n", s.kills, s.doubles, s.killed, s.vanished)
	fmt.Printf("restarts done: %d (worker running events after the first %d; per worker %s)\n", s.restartsLogged, n, perWorker(s.restartsPerWorker))
	if *standby {
		fmt.Printf("  served by a standby: %d of %d\n", s.fromStandby, s.restartsLogged)
	}
	fmt.Printf("failures to restore %d: %d of %d kill rounds (all %d running again, as logged and in /proc, within %v)\n", n, s.failures, s.kills, n, *restoreTimeout)
	for _, f := range s.failureNotes {
		fmt.Printf("  %s\n", f)
	}
	if len(s.restore) > 0 {
		fmt.Printf("restore time (kill to %d running): %s\n", n, quantiles(s.restore))
		fmt.Printf("  minus the backoff mrtd logged: %s\n", quantiles(s.restoreWork))
		fmt.Printf("  (a worker killed again within 30 s of its start backs off twice as long, %v up to %v, ±20%%)\n", *backoffMin, *backoffMax)
	}
	fmt.Printf("unexpected worker exits: %d (exits logged beyond the inits killed)\n", s.unexpectedExits)
	end := strconv.Itoa(s.fdEnd)
	if s.fdEnd == 0 {
		end = "not measured"
	}
	fmt.Printf("mrtd open fds: start %d, end %s (all %d workers running both times)\n", s.fdStart, end, n)
	switch {
	case !s.hasStatus:
		fmt.Println("goroutines: not exposed")
	case s.statusErr != nil || s.statusEnd.Goroutines == 0:
		fmt.Printf("goroutines: start %d, end not measured (%v)\n", s.statusStart.Goroutines, s.statusErr)
	default:
		fmt.Printf("goroutines: start %d, end %d (mrtd's status on SIGUSR1, which counts %d and %d open fds itself)\n",
			s.statusStart.Goroutines, s.statusEnd.Goroutines, s.statusStart.OpenFDs, s.statusEnd.OpenFDs)
	}
	fmt.Printf("zombie children of mrtd (before stop): %s\n", countList(s.zombies))
	switch {
	case s.stopErr != nil:
		fmt.Printf("mrtd stop: %v (after %s)\n", s.stopErr, ms(s.stopTook))
	case s.stopTook > 0:
		fmt.Printf("mrtd stop: exit 0, %s after SIGTERM (stop timeout %v, then SIGKILL: sleep ignores SIGTERM)\n", ms(s.stopTook), *stopTimeout)
	}
	fmt.Printf("leaked processes after mrtd exited: %s\n", countList(s.leaked))
	fmt.Printf("runc state left: %s\n", countList(s.stateLeft))
	fmt.Printf("bundles left: %s\n", countList(s.bundlesLeft))
	if problems := s.d.Snapshot().Problems; len(problems) > 0 {
		fmt.Printf("mrtd logged errors (last %d):\n", len(problems))
		for _, p := range problems {
			fmt.Printf("  %s\n", p)
		}
	}
}

func quantiles(d []time.Duration) string {
	c := slices.Clone(d)
	slices.Sort(c)
	q := func(f float64) string { return ms(c[int(f*float64(len(c)-1)+0.5)]) }
	return fmt.Sprintf("min %s, median %s, p90 %s, p99 %s, max %s", q(0), q(0.5), q(0.9), q(0.99), q(1))
}

func perWorker(m map[int]int) string {
	var ws []int
	for w := range m {
		ws = append(ws, w)
	}
	slices.Sort(ws)
	var parts []string
	for _, w := range ws {
		parts = append(parts, fmt.Sprintf("%d:%d", w, m[w]))
	}
	return strings.Join(parts, " ")
}

func countList(l []string) string {
	if len(l) == 0 {
		return "0"
	}
	return fmt.Sprintf("%d: %s", len(l), strings.Join(l, "; "))
}

func keys(m map[int]int) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func dirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, err
}

// cachedRunc is the runc binary mrtd extracted into cache.
func cachedRunc(cache string) string {
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "runc-") && !strings.HasSuffix(e.Name(), ".lock") {
			return filepath.Join(cache, e.Name())
		}
	}
	return ""
}
