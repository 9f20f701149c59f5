package mrtdtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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

// The Gearman tests run Debian's job server (gearmand, from
// gearman-job-server) and its command-line client and worker (gearman,
// from gearman-tools): the client on the test's side, the workers in
// mrtd's containers, from a rootfs built with `make rootfs
// NAME=gearman-worker PACKAGES=gearman-tools`. `make e2e` installs both
// packages, builds that rootfs and names it in MRTD_E2E_GEARMAN_ROOTFS;
// without it the tests skip, so that `make test` needs none of it.

// Paths of the Gearman tools, as Debian installs them.
const (
	GearmandBin  = "/usr/sbin/gearmand"
	GearmanBin   = "/usr/bin/gearman"
	GearadminBin = "/usr/bin/gearadmin"
)

// NeedGearman skips t unless MRTD_E2E_GEARMAN_ROOTFS names the gearman
// worker rootfs, and returns a copy of it that the unprivileged uid can
// read; then missing Gearman tools fail t.
func (e *Env) NeedGearman(t testing.TB) string {
	t.Helper()
	src := os.Getenv("MRTD_E2E_GEARMAN_ROOTFS")
	if src == "" {
		t.Skip("Gearman tests: run `make e2e` (it installs gearman-job-server and gearman-tools, builds build/rootfs-gearman-worker.tar.zst and sets MRTD_E2E_GEARMAN_ROOTFS)")
	}
	for _, bin := range []string{GearmandBin, GearmanBin, GearadminBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("MRTD_E2E_GEARMAN_ROOTFS is set but %v: `make e2e` installs Debian's gearman-job-server and gearman-tools", err)
		}
	}
	dst := filepath.Join(e.UserDir(t, "rootfs"), filepath.Base(src))
	if err := CopyFile(src, dst, 0o644); err != nil {
		t.Fatalf("MRTD_E2E_GEARMAN_ROOTFS: %v", err)
	}
	return dst
}

// GearmanJob is the program the workers run for each job (python3 -c): it
// reads the job's number on stdin, says on stderr that it started it,
// takes a random 0-500 ms, and prints "N N*N HOSTNAME" (the container's
// host name, <instance>-<index>), an answer the client can check and
// trace to its worker.
const GearmanJob = `import os, random, sys, time
n = int(sys.stdin.read())
print("start", n, file=sys.stderr, flush=True)
time.sleep(random.uniform(0, 0.5))
print(n, n * n, os.uname().nodename)`

// GearmanWorker is the command of a worker that serves function fn of the
// job server at host:port: the real `gearman -w`, which runs GearmanJob
// per job with its payload on stdin and returns its stdout.
func GearmanWorker(host string, port int, fn string) []string {
	return []string{"gearman", "-w", "-h", host, "-p", strconv.Itoa(port), "-f", fn, "--", "python3", "-c", GearmanJob}
}

// Gearmand is one gearmand, run as root, stopped when its test ends.
type Gearmand struct {
	// Host and Port are where clients and workers reach it from its own
	// network namespace: 127.0.0.1.
	Host string
	Port int
	// Netns is the namespace it runs in; nil for the test's own.
	Netns *Netns

	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
	once   sync.Once
}

// GearmandOptions say how to start gearmand.
type GearmandOptions struct {
	// Netns runs it in that namespace, listening on every address there
	// (port 4730); nil runs it in the test's own, on 127.0.0.1 and a free
	// port.
	Netns *Netns
	// Keepalive, when not zero, turns TCP keepalive on for every
	// connection (--keepalive): probes after Keepalive idle, then every
	// Keepalive/2, and the connection is closed after three unanswered,
	// so that gearmand notices a worker whose host is gone, and requeues
	// its job, within about 2.5 Keepalive.
	Keepalive time.Duration
}

// gearmandStartTimeout bounds the wait for gearmand to answer.
const gearmandStartTimeout = 20 * time.Second

// StartGearmand starts gearmand for t and stops it when t ends.
func StartGearmand(t testing.TB, opts GearmandOptions) *Gearmand {
	t.Helper()
	dir := t.TempDir()
	g := &Gearmand{Host: "127.0.0.1", Port: 4730, Netns: opts.Netns, log: &syncBuffer{}, exited: make(chan struct{})}
	listen := "0.0.0.0"
	if opts.Netns == nil {
		addr, err := freeLoopbackAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(addr)
		g.Port, _ = strconv.Atoi(port)
		listen = g.Host
	}
	args := []string{GearmandBin,
		"--config-file", "/dev/null", // not the host's /etc/gearmand.conf
		"--listen", listen, "--port", strconv.Itoa(g.Port),
		"--log-file", "stderr", "--verbose", "NOTICE",
		"--pid-file", filepath.Join(dir, "gearmand.pid"),
		"--threads", "2",
		"--job-retries", "0", // requeue the job of a worker that dies, however often
	}
	if opts.Keepalive > 0 {
		idle := max(1, int(opts.Keepalive/time.Second))
		args = append(args, "--keepalive",
			"--keepalive-idle", strconv.Itoa(idle),
			"--keepalive-interval", strconv.Itoa(max(1, idle/2)),
			"--keepalive-count", "3")
	}
	if opts.Netns != nil {
		args = opts.Netns.Wrap(args...)
	}
	g.cmd = exec.Command(args[0], args[1:]...)
	g.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(g.Stop)
	if err := g.waitReady(gearmandStartTimeout); err != nil {
		t.Fatalf("gearmand: %v\n%s", err, g.log.String())
	}
	return g
}

// waitReady polls gearadmin --getpid until gearmand answers, gearmand
// exits, or timeout passes.
func (g *Gearmand) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := g.admin("--getpid"); err == nil {
			return nil
		}
		select {
		case <-g.exited:
			return errors.New("gearmand exited before it answered")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gearmand did not answer within %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops gearmand (SIGTERM, then SIGKILL after 10s) and waits for it;
// it may be called more than once.
func (g *Gearmand) Stop() {
	g.once.Do(func() {
		g.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-g.exited:
		case <-t.C:
			g.cmd.Process.Kill()
			<-g.exited
		}
	})
}

// Log is what gearmand logged so far.
func (g *Gearmand) Log() string { return g.log.String() }

// command returns args run where gearmand runs (its namespace).
func (g *Gearmand) command(ctx context.Context, args ...string) *exec.Cmd {
	if g.Netns != nil {
		args = g.Netns.Wrap(args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	return cmd
}

// adminTimeout bounds every gearadmin command.
const adminTimeout = 10 * time.Second

// admin runs gearadmin against gearmand with args and returns its stdout.
func (g *Gearmand) admin(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	args = append([]string{GearadminBin, "-h", g.Host, "-p", strconv.Itoa(g.Port)}, args...)
	out, err := g.command(ctx, args...).Output()
	if err != nil {
		return "", fmt.Errorf("gearadmin %s: %w", strings.Join(args[1:], " "), err)
	}
	return string(out), nil
}

// Workers returns how many worker connections gearmand has for function
// fn, by the address they come from (gearadmin --workers).
func (g *Gearmand) Workers(t testing.TB, fn string) map[string]int {
	t.Helper()
	out, err := g.admin("--workers")
	if err != nil {
		t.Fatal(err)
	}
	// Each line is "FD IP CLIENT-ID : FUNCTION...", then ".".
	byAddr := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		left, fns, ok := strings.Cut(line, " : ")
		f := strings.Fields(left)
		if !ok || len(f) < 2 {
			continue
		}
		for _, name := range strings.Fields(fns) {
			if name == fn {
				byAddr[f[1]]++
			}
		}
	}
	return byAddr
}

// WaitWorkers waits until gearmand has want workers of fn from each
// address in want (and none from any other), polling for timeout at most.
func (g *Gearmand) WaitWorkers(t testing.TB, fn string, want map[string]int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := g.Workers(t, fn)
		if equalCounts(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gearmand has workers %v for %s after %v, want %v\n%s", got, fn, timeout, want, g.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Jobs submits numbered jobs to one function of a gearmand through the
// real gearman client, as a user would: each of its lanes is one `gearman
// -n` process that submits the numbers written to its stdin, one a line,
// one job at a time, and writes each answer to its stdout. A lane writes
// the next number only when the previous job ended, so jobs keep flowing
// at the pace the workers take them, and every answer, failure and time
// is known by job.
type Jobs struct {
	retries int

	mu       sync.Mutex
	next     int   // the next job number to hand out
	total    int   // jobs to run; lanes stop when none is left
	retry    []int // failed jobs to submit again
	answers  map[int][]Answer
	failures []Failure
	problems []string
	changed  chan struct{}

	done chan struct{} // closed once every lane has ended
}

// Answer is one answer the client got: the worker's output line, parsed.
type Answer struct {
	Job    int
	Square int
	// Host is the host name of the worker's container (<instance>-<index>).
	Host string
	At   time.Time
}

// Failure is a job the client was told failed (gearmand's WORK_FAIL: the
// client prints "Job failed"), or any other error line of the client.
type Failure struct {
	Job  int
	Line string
	At   time.Time
}

// JobsOptions say what to submit.
type JobsOptions struct {
	// Function is the Gearman function name.
	Function string
	// Total is how many jobs to run, numbered 0 to Total-1.
	Total int
	// Lanes is how many client processes submit at once.
	Lanes int
	// Retries is how often a failed job is submitted again, each time
	// after retryDelay; 0: never.
	Retries int
}

// retryDelay is how long a lane waits before it submits a failed job
// again, as a client that backs off would.
const retryDelay = 100 * time.Millisecond

// jobTimeout bounds the wait for one job's answer.
const jobTimeout = 3 * time.Minute

// StartJobs starts the client's lanes against g (in g's namespace) and
// stops them when t ends.
func StartJobs(t testing.TB, g *Gearmand, opts JobsOptions) *Jobs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	j := &Jobs{retries: opts.Retries, total: opts.Total,
		answers: map[int][]Answer{}, changed: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel() // kills the clients still running
		wg.Wait()
	})
	for range opts.Lanes {
		cmd := g.command(ctx, GearmanBin, "-h", g.Host, "-p", strconv.Itoa(g.Port), "-f", opts.Function, "-n")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.lane(ctx, stdin, stdout, stderr)
			cmd.Wait()
		}()
	}
	go func() {
		wg.Wait()
		close(j.done)
		j.update(func() {})
	}()
	return j
}

// lane submits jobs through one client until none is left, ctx ends, or a
// job gets no answer within jobTimeout; then it closes the client's stdin,
// so that the client exits, and returns once its output is read.
func (j *Jobs) lane(ctx context.Context, stdin io.WriteCloser, stdout, stderr io.Reader) {
	type line struct {
		text  string
		isErr bool
	}
	lines := make(chan line)
	quit := make(chan struct{})
	var readers sync.WaitGroup
	read := func(r io.Reader, isErr bool) {
		defer readers.Done()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case lines <- line{sc.Text(), isErr}:
			case <-quit: // read on to the end, so that the client never blocks
			}
		}
	}
	readers.Add(2)
	go read(stdout, false)
	go read(stderr, true)
	defer func() {
		stdin.Close()
		close(quit)
		readers.Wait()
	}()
	timer := time.NewTimer(jobTimeout)
	defer timer.Stop()
	for {
		job, retry, ok := j.take()
		if !ok {
			return
		}
		if retry && !sleepCtx(ctx, retryDelay) {
			return
		}
		if _, err := fmt.Fprintf(stdin, "%d\n", job); err != nil {
			j.problem(fmt.Sprintf("job %d: writing to the client: %v", job, err))
			return
		}
		timer.Reset(jobTimeout)
		for answered := false; !answered; {
			select {
			case l := <-lines:
				if l.isErr {
					j.fail(job, l.text)
					answered = true
				} else {
					answered = j.answer(job, l.text)
				}
			case <-timer.C:
				j.problem(fmt.Sprintf("job %d: no answer within %v", job, jobTimeout))
				return
			case <-ctx.Done():
				return
			}
		}
	}
}

// sleepCtx waits for d, or less when ctx ends first; it reports whether
// ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// take returns the next job to submit, a failed one to retry first, and
// whether it is a retry.
func (j *Jobs) take() (job int, retry, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.retry) > 0 {
		job = j.retry[0]
		j.retry = j.retry[1:]
		return job, true, true
	}
	if j.next >= j.total {
		return 0, false, false
	}
	j.next++
	return j.next - 1, false, true
}

// answer records the answer line for job and reports whether it was for
// job; a line for another job (an answer given twice, or late) is kept
// too, under the job it names.
func (j *Jobs) answer(job int, text string) bool {
	a, err := parseAnswer(text)
	if err != nil {
		j.problem(fmt.Sprintf("job %d: answer %q: %v", job, text, err))
		return true
	}
	j.update(func() { j.answers[a.Job] = append(j.answers[a.Job], a) })
	if a.Job != job {
		j.problem(fmt.Sprintf("job %d: got the answer of job %d: %q", job, a.Job, text))
		return false
	}
	return true
}

// parseAnswer parses the worker's "N N*N HOSTNAME".
func parseAnswer(text string) (Answer, error) {
	f := strings.Fields(text)
	if len(f) != 3 {
		return Answer{}, errors.New("want 3 fields")
	}
	a := Answer{Host: f[2], At: time.Now()}
	var err error
	if a.Job, err = strconv.Atoi(f[0]); err != nil {
		return Answer{}, err
	}
	if a.Square, err = strconv.Atoi(f[1]); err != nil {
		return Answer{}, err
	}
	return a, nil
}

// fail records that job failed, and submits it again while it has
// retries left.
func (j *Jobs) fail(job int, text string) {
	j.update(func() {
		j.failures = append(j.failures, Failure{Job: job, Line: text, At: time.Now()})
		n := 0
		for _, f := range j.failures {
			if f.Job == job {
				n++
			}
		}
		if n <= j.retries {
			j.retry = append(j.retry, job)
		}
	})
}

func (j *Jobs) problem(s string) {
	j.update(func() { j.problems = append(j.problems, s) })
}

// update changes the state under the lock and wakes the waiters.
func (j *Jobs) update(f func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	f()
	close(j.changed)
	j.changed = make(chan struct{})
}

// JobsState is a copy of what the client got so far.
type JobsState struct {
	// Answers are the answers by job, in the order they came.
	Answers  map[int][]Answer
	Failures []Failure
	// Problems are answers that could not be parsed or came for another
	// job than the one a lane waited for, and lanes that gave up.
	Problems []string
	// Submitted counts the jobs handed to the lanes: jobs 0 to
	// Submitted-1.
	Submitted int
	// Ended is true once every lane has ended.
	Ended bool
}

// Answered counts the jobs that got an answer.
func (s *JobsState) Answered() int { return len(s.Answers) }

// AnsweredBy counts the answers whose worker's host name starts with
// prefix and that came after since.
func (s *JobsState) AnsweredBy(prefix string, since time.Time) int {
	n := 0
	for _, as := range s.Answers {
		for _, a := range as {
			if strings.HasPrefix(a.Host, prefix) && !a.At.Before(since) {
				n++
			}
		}
	}
	return n
}

// State returns a copy of the state.
func (j *Jobs) State() JobsState {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stateLocked()
}

func (j *Jobs) stateLocked() JobsState {
	s := JobsState{Answers: make(map[int][]Answer, len(j.answers))}
	for k, v := range j.answers {
		s.Answers[k] = append([]Answer(nil), v...)
	}
	s.Failures = append([]Failure(nil), j.failures...)
	s.Problems = append([]string(nil), j.problems...)
	s.Submitted = j.next
	select {
	case <-j.done:
		s.Ended = true
	default:
	}
	return s
}

// WaitFor waits until cond, called with the state after each change, is
// true; it fails t when timeout passes first.
func (j *Jobs) WaitFor(t testing.TB, what string, timeout time.Duration, cond func(*JobsState) bool) JobsState {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		j.mu.Lock()
		s, ch := j.stateLocked(), j.changed
		j.mu.Unlock()
		if cond(&s) {
			return s
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("waiting %v for %s: %d jobs answered, %d failures, problems %q", timeout, what, s.Answered(), len(s.Failures), s.Problems)
		}
	}
}

// Stop hands out no new job: the lanes end once their jobs did.
func (j *Jobs) Stop() {
	j.update(func() { j.total = j.next })
}

// Wait waits until every lane has ended, for timeout at most, and returns
// the state.
func (j *Jobs) Wait(t testing.TB, timeout time.Duration) JobsState {
	t.Helper()
	return j.WaitFor(t, "every job", timeout, func(s *JobsState) bool { return s.Ended })
}

// Check fails t unless every job submitted got exactly one answer, and
// the right one, with no problem: exactly once from the client's point of
// view.
func (s *JobsState) Check(t testing.TB) {
	t.Helper()
	total := s.Submitted
	for _, p := range s.Problems {
		t.Errorf("client: %s", p)
	}
	missing := 0
	for job := range total {
		as := s.Answers[job]
		switch {
		case len(as) == 0:
			missing++
		case len(as) > 1:
			t.Errorf("job %d answered %d times: %+v", job, len(as), as)
		case as[0].Square != job*job:
			t.Errorf("job %d answered %d, want %d (worker %s)", job, as[0].Square, job*job, as[0].Host)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d jobs got no answer", missing, total)
	}
	if extra := len(s.Answers) - (total - missing); extra > 0 {
		t.Errorf("%d answers for jobs that were never submitted", extra)
	}
}
