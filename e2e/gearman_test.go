package e2e

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// The Gearman tests run mrtd's workers against a real job server: Debian's
// gearmand, its `gearman -w` workers in a rootfs built from Debian
// packages (`make rootfs NAME=gearman-worker PACKAGES=gearman-tools`), and
// its `gearman` client, which submits numbered jobs and checks every
// answer. `make e2e` runs them; they skip without MRTD_E2E_GEARMAN_ROOTFS.
//
// What the client sees when a worker dies: gearmand hands a job to one
// worker connection and, when that connection closes before the result
// came, queues the job again for another worker (gearmand --job-retries 0,
// the default, allows that any number of times). A worker killed mid-job
// never sends a failure: its container dies with it, and the client just
// waits a little longer for its one answer. WORK_FAIL ("Job failed") comes
// only from a worker that is alive and whose command exits non-zero; the
// several-hosts test shows when that happens and retries such a job.

// gearmanFunction is the Gearman function the workers serve.
const gearmanFunction = "square"

// workerArgs are mrtd's flags for a pool of n gearman workers from rootfs,
// reaching gearmand at host:port. gearman -w, the container's pid 1,
// installs no SIGTERM handler, so a stop kills it after --stop-timeout;
// gearmand requeues the job it had.
func workerArgs(e *mrtdtest.Env, d mrtdtest.Dirs, rootfs string, n int, host string, port int, extra ...string) []string {
	args := []string{"--runc", e.Runc, "--rootfs", rootfs, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime,
		"--workers", fmt.Sprint(n), "--stop-timeout", "2s"}
	args = append(append(args, extra...), "--")
	return append(args, mrtdtest.GearmanWorker(host, port, gearmanFunction)...)
}

// startedJobs counts, by job, the "start N" lines the workers of log
// printed: how often each job was started.
func startedJobs(lines []string) map[int]int {
	started := map[int]int{}
	for _, l := range lines {
		i := strings.Index(l, `"line":"start `)
		if i < 0 {
			continue
		}
		var job int
		if _, err := fmt.Sscanf(l[i+len(`"line":"start `):], "%d", &job); err == nil {
			started[job]++
		}
	}
	return started
}

// TestGearmanOneHost runs 4 workers against gearmand on 127.0.0.1 while
// the client submits 1000 jobs and a storm kills a random busy worker
// (one whose job's process runs) every 200-500 ms: every job gets its one
// correct answer, the pool is back to 4 after each kill, and mrtd status
// counts every restart.
func TestGearmanOneHost(t *testing.T) {
	e := needIntegration(t)
	rootfs := e.NeedGearman(t)
	g := mrtdtest.StartGearmand(t, mrtdtest.GearmandOptions{})
	d := e.NewDirs(t)
	// A worker killed every second or so never runs the 30 s that reset
	// its failure count: a short backoff cap keeps its restarts quick.
	p := e.StartDaemon(t, d, workerArgs(e, d, rootfs, 4, g.Host, g.Port, "--backoff-max", "300ms")...)
	p.Running(t, 4)
	g.WaitWorkers(t, gearmanFunction, map[string]int{"127.0.0.1": 4}, 30*time.Second)

	const total = 1000
	jobs := mrtdtest.StartJobs(t, g, mrtdtest.JobsOptions{Function: gearmanFunction, Total: total, Lanes: 8})

	// The storm: bounded in kills and in time, and over once the jobs are.
	const maxKills = 400
	deadline := time.Now().Add(5 * time.Minute)
	kills := map[int]int{} // by worker
	nkills := 0
	for nkills < maxKills && time.Now().Before(deadline) && !jobs.State().Ended {
		time.Sleep(time.Duration(200+rand.IntN(301)) * time.Millisecond)
		running := waitRunning(t, e, d, 4)
		var busy []int
		for w, pid := range running {
			if len(mrtdtest.LiveChildren(pid)) > 0 {
				busy = append(busy, w)
			}
		}
		if len(busy) == 0 {
			continue // between jobs, or the jobs are over
		}
		w := busy[rand.IntN(len(busy))]
		old := running[w]
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("kill worker %d (pid %d): %v", w, old, err)
		}
		kills[w]++
		nkills++
		// Back to 4, with a new container for w.
		for wait := time.Now().Add(30 * time.Second); ; {
			now := waitRunning(t, e, d, 4)
			if now[w] != old {
				break
			}
			if time.Now().After(wait) {
				t.Fatalf("worker %d still has pid %d 30s after it was killed", w, old)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	state := jobs.Wait(t, 5*time.Minute)
	if state.Submitted != total {
		t.Errorf("%d jobs submitted, want %d", state.Submitted, total)
	}
	state.Check(t)
	for _, f := range state.Failures {
		t.Errorf("job %d failed (%q) at %v: a killed worker's job must be requeued, not failed", f.Job, f.Line, f.At)
	}
	if nkills == 0 {
		t.Fatal("the storm killed no worker")
	}

	// mrtd status counts every kill as a restart of its worker.
	resp := statusJSON(t, e, d)
	restarts := 0
	for _, ws := range resp.Workers {
		restarts += ws.Restarts
		if ws.Restarts != kills[ws.Worker] {
			t.Errorf("worker %d: status says %d restarts, it was killed %d times", ws.Worker, ws.Restarts, kills[ws.Worker])
		}
		if ws.Restarts > 0 && ws.LastExit != "killed by signal SIGKILL" {
			t.Errorf("worker %d: last exit %q, want killed by signal SIGKILL", ws.Worker, ws.LastExit)
		}
	}
	p.StopCleanly(t, d) // and its log is read to the end

	// Each kill stopped a job that then ran again elsewhere, unless it
	// came before the job printed its first line.
	started := startedJobs(p.Lines())
	runs, reruns := 0, 0
	for job := range total {
		runs += started[job]
		if started[job] > 1 {
			reruns++
		}
		if started[job] == 0 {
			t.Errorf("job %d never started, by the workers' log", job)
		}
	}
	if runs > total+nkills {
		t.Errorf("%d job runs for %d jobs and %d kills: jobs ran again without a kill", runs, total, nkills)
	}
	t.Logf("%d jobs answered once each; %d kills (by worker %v), %d restarts in mrtd status; %d jobs ran again after their worker was killed",
		state.Answered(), nkills, kills, restarts, reruns)
}

// gearmanHost is one simulated host of TestGearmanSeveralHosts: its own
// network namespace, address and mrtd.
type gearmanHost struct {
	name string // the mrtd instance; its containers are <name>-<index>
	addr string
	ns   *mrtdtest.Netns
	dirs mrtdtest.Dirs
	args []string
	mrtd *mrtdtest.Daemon
}

// start starts the host's mrtd in its namespace and waits for its n
// workers.
func (h *gearmanHost) start(t *testing.T, e *mrtdtest.Env, n int) map[int]int {
	t.Helper()
	h.mrtd = mrtdtest.StartCmd(t, e.CommandIn(h.ns, e.Mrtd, h.dirs, h.args...))
	return h.mrtd.Running(t, n)
}

// TestGearmanSeveralHosts runs gearmand in a network namespace of its own
// and two "hosts", each a namespace joined to the server's bridge by a
// veth pair and running its own mrtd with 3 workers. Mid-run host A's link
// is cut: gearmand notices within seconds (keepalive), requeues A's jobs,
// and host B keeps serving; the link is restored and A's workers rejoin
// with no restart of mrtd. Then A's mrtd is killed with SIGKILL and started
// again: it removes what the dead one left, and its workers rejoin. No job
// is lost.
func TestGearmanSeveralHosts(t *testing.T) {
	e := needIntegration(t)
	rootfs := e.NeedGearman(t)
	mrtdtest.NeedNetns(t)

	// The network: 10.77.0.1 on the server's bridge, A and B on its ports.
	srv := mrtdtest.NewNetns(t, "server")
	srv.IP(t, "link", "add", "br0", "type", "bridge")
	srv.IP(t, "addr", "add", "10.77.0.1/24", "dev", "br0")
	srv.IP(t, "link", "set", "br0", "up")
	// A connection whose unacknowledged data (a NOOP to a sleeping worker,
	// a job just assigned) cannot reach a host that is gone is given up
	// after about 13 s of retransmissions instead of 15 minutes.
	srv.Sysctl(t, "net.ipv4.tcp_retries2=5")
	// gearmand probes idle connections after 2 s, every 1 s, and closes
	// one after 3 unanswered probes: a busy worker behind a cut link is
	// noticed within about 5 s, and its job requeued. Without keepalive
	// gearmand waits for that worker's result until the link is back.
	g := mrtdtest.StartGearmand(t, mrtdtest.GearmandOptions{Netns: srv, Keepalive: 2 * time.Second})

	cache := e.UserDir(t, "cache")
	hosts := []*gearmanHost{{name: "hosta", addr: "10.77.0.2"}, {name: "hostb", addr: "10.77.0.3"}}
	for _, h := range hosts {
		h.ns = mrtdtest.NewNetns(t, h.name)
		mrtdtest.Veth(t, srv, "to-"+h.name, h.ns, "eth0")
		srv.IP(t, "link", "set", "to-"+h.name, "master", "br0")
		h.ns.IP(t, "addr", "add", h.addr+"/24", "dev", "eth0")
		// libgearman turns keepalive on for the workers' connections, with
		// the host's timers (2 hours by default): a worker waiting for
		// work on a connection gearmand gave up notices after 5 s, and
		// connects again.
		h.ns.Sysctl(t, "net.ipv4.tcp_keepalive_time=2", "net.ipv4.tcp_keepalive_intvl=1", "net.ipv4.tcp_keepalive_probes=3")
		h.dirs = mrtdtest.Dirs{Cache: cache, Runtime: e.UserDir(t, "run-"+h.name), Home: e.UserDir(t, "home-"+h.name)}
		h.args = workerArgs(e, h.dirs, rootfs, 3, "10.77.0.1", g.Port, "--instance", h.name)
		h.start(t, e, 3)
	}
	a, b := hosts[0], hosts[1]
	both := map[string]int{a.addr: 3, b.addr: 3}
	g.WaitWorkers(t, gearmanFunction, both, 30*time.Second)

	// The client runs beside gearmand; a job that fails is submitted
	// again (see the kill -9 below).
	jobs := mrtdtest.StartJobs(t, g, mrtdtest.JobsOptions{Function: gearmanFunction, Total: 1 << 20, Lanes: 12, Retries: 20})
	start := time.Now()
	jobs.WaitFor(t, "answers from both hosts", time.Minute, func(s *mrtdtest.JobsState) bool {
		return s.AnsweredBy(a.name+"-", start) >= 10 && s.AnsweredBy(b.name+"-", start) >= 10
	})

	// Cut A's link. The jobs A had started and not answered must still be
	// answered, by B, while the link is down.
	answered := jobs.State().Answers
	var inflight []int
	for job := range startedJobs(a.mrtd.Lines()) {
		if len(answered[job]) == 0 {
			inflight = append(inflight, job)
		}
	}
	cut := time.Now()
	srv.IP(t, "link", "set", "to-"+a.name, "down")
	g.WaitWorkers(t, gearmanFunction, map[string]int{b.addr: 3}, time.Minute)
	s := jobs.WaitFor(t, "host B to answer A's jobs and keep serving", 2*time.Minute, func(s *mrtdtest.JobsState) bool {
		for _, job := range inflight {
			if len(s.Answers[job]) == 0 {
				return false
			}
		}
		return s.AnsweredBy(b.name+"-", cut) >= 20
	})
	requeued := 0
	for _, job := range inflight {
		if strings.HasPrefix(s.Answers[job][0].Host, b.name+"-") {
			requeued++
		}
	}
	if len(inflight) > 0 && requeued == 0 {
		t.Errorf("none of A's jobs %v at the cut was run again by B: %+v", inflight, s.Answers)
	}
	t.Logf("link of %s cut: %d jobs were running there, %d of them answered by %s", a.name, len(inflight), requeued, b.name)

	// Restore it: A's workers connect again by themselves, with the same
	// mrtd and the same containers.
	pidsA := a.mrtd.Snapshot().Pids
	restored := time.Now()
	srv.IP(t, "link", "set", "to-"+a.name, "up")
	g.WaitWorkers(t, gearmanFunction, both, 2*time.Minute)
	jobs.WaitFor(t, "answers from A after the link is back", time.Minute, func(s *mrtdtest.JobsState) bool {
		return s.AnsweredBy(a.name+"-", restored) >= 10
	})
	select {
	case <-a.mrtd.Exited():
		t.Fatalf("%s's mrtd exited:\n%s", a.name, a.mrtd.Log())
	default:
	}
	if now := a.mrtd.Snapshot().Pids; !maps.Equal(now, pidsA) {
		t.Logf("%s's workers were restarted by mrtd while the link was down: %v, then %v", a.name, pidsA, now)
	}
	if n := len(jobs.State().Failures); n > 0 {
		t.Errorf("%d jobs failed around the cut: %+v", n, jobs.State().Failures)
	}

	// kill -9 A's mrtd, and start it again at once, as systemd would
	// (Restart=on-failure): it removes the containers the dead one left
	// and its new workers join.
	old := a.mrtd.Snapshot().Pids
	killed := time.Now()
	a.mrtd.Signal(syscall.SIGKILL)
	<-a.mrtd.Exited()
	pidsNew := a.start(t, e, 3)
	if n := strings.Count(a.mrtd.Log(), "removing container left by a process that died"); n != 3 {
		t.Errorf("the new mrtd removed %d containers left by the killed one, want 3:\n%s", n, a.mrtd.Log())
	}
	for w, pid := range old {
		if mrtdtest.Alive(pid) {
			t.Errorf("worker %d of the killed mrtd (pid %d) still runs", w, pid)
		}
		if pidsNew[w] == pid {
			t.Errorf("worker %d kept pid %d across the restart", w, pid)
		}
	}
	g.WaitWorkers(t, gearmanFunction, both, time.Minute)
	rejoined := time.Now()
	jobs.WaitFor(t, "answers from A's new workers", time.Minute, func(s *mrtdtest.JobsState) bool {
		return s.AnsweredBy(a.name+"-", rejoined) >= 10
	})

	jobs.Stop()
	s = jobs.Wait(t, 2*time.Minute)
	s.Check(t)
	// Between the kill and the new mrtd's cleanup, the dead mrtd's
	// workers keep running, but nothing reads their stdout and stderr
	// any more: a job that writes there (GearmanJob says "start N" on
	// stderr) dies of EPIPE, and gearman -w reports WORK_FAIL. The client
	// retried those; none may fail at any other time.
	var failed []int
	for _, f := range s.Failures {
		if f.At.Before(killed) || f.At.After(rejoined) {
			t.Errorf("job %d failed (%q) outside the kill -9 of %s's mrtd", f.Job, f.Line, a.name)
		}
		failed = append(failed, f.Job)
	}
	t.Logf("%d jobs answered once each; %d failed while %s's mrtd was dead and were retried: %v",
		s.Answered(), len(failed), a.name, slices.Compact(slices.Sorted(slices.Values(failed))))
	for _, h := range hosts {
		h.mrtd.StopCleanly(t, h.dirs)
	}
}
