package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/reaper"
	"github.com/mrt-project/mrt/supervisor"
)

// Config describes the pool.
type Config struct {
	// Workers is how many containers to keep running.
	Workers int
	// Instance names the containers (<Instance>-<index>).
	Instance string
	// Template is every worker's container; ID-specific fields (Hostname)
	// and the MRTD_WORKER and MRTD_INSTANCE variables are set per worker.
	Template container.Options
	// WorkerEnv adds environment entries for single workers, by index.
	WorkerEnv   map[int][]string
	StopSignal  unix.Signal
	StopTimeout time.Duration
	// Supervisor configures restarts; its Hook is wrapped by the pool.
	Supervisor supervisor.Spec
}

// Pool is N workers under one supervisor.
type Pool struct {
	cfg    Config
	rt     *container.Runtime
	reaper *reaper.Reaper
	log    logr.Logger
	sup    *supervisor.Supervisor
	kill   chan struct{}

	scaleMu sync.Mutex // serializes Scale
	mu      sync.Mutex
	desired int
	workers map[int]*worker // by index; their opts are guarded by mu
}

// New returns a pool of cfg.Workers workers.
func New(cfg Config, rt *container.Runtime, rp *reaper.Reaper, log logr.Logger) *Pool {
	p := &Pool{cfg: cfg, rt: rt, reaper: rp, log: log, kill: make(chan struct{})}
	spec := cfg.Supervisor
	hook := spec.Hook
	spec.Hook = func(ev supervisor.Event) {
		p.logEvent(ev)
		if hook != nil {
			hook(ev)
		}
	}
	p.sup = supervisor.New(spec)
	p.desired = cfg.Workers
	p.workers = map[int]*worker{}
	for i := 0; i < cfg.Workers; i++ {
		p.sup.Add(ContainerID(cfg.Instance, i), p.newWorker(i))
	}
	return p
}

// ContainerID is the id (and hostname) of worker index of instance.
func ContainerID(instance string, index int) string {
	return instance + "-" + strconv.Itoa(index)
}

func (p *Pool) newWorker(i int) *worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := &worker{index: i, id: ContainerID(p.cfg.Instance, i), opts: p.options(i), pool: p, log: p.log}
	p.workers[i] = w
	return w
}

// options is worker i's container, from the current configuration. The
// caller holds p.mu.
func (p *Pool) options(i int) container.Options {
	id := ContainerID(p.cfg.Instance, i)
	o := p.cfg.Template
	o.Hostname = id
	o.Env = append(append([]string(nil), o.Env...), p.cfg.WorkerEnv[i]...)
	o.Env = append(o.Env, "MRTD_WORKER="+strconv.Itoa(i), "MRTD_INSTANCE="+p.cfg.Instance)
	return o
}

// Reconfigure changes the workers' container template and per-worker
// environments. Workers whose container changes are restarted with the new
// one; the others keep running untouched. It returns the indexes restarted.
func (p *Pool) Reconfigure(template container.Options, workerEnv map[int][]string) []int {
	p.mu.Lock()
	p.cfg.Template, p.cfg.WorkerEnv = template, workerEnv
	var changed []int
	for i, w := range p.workers {
		if o := p.options(i); !reflect.DeepEqual(o, w.opts) {
			w.opts = o
			changed = append(changed, i)
		}
	}
	p.mu.Unlock()
	sort.Ints(changed)
	for _, i := range changed {
		p.sup.Restart(ContainerID(p.cfg.Instance, i))
	}
	return changed
}

// Run keeps the workers running until ctx is cancelled, then stops them all
// at once and returns when every container is deleted. It returns an error
// wrapping supervisor.ErrDoNotRestart when the rootfs or runc became
// unusable.
func (p *Pool) Run(ctx context.Context) error {
	return p.sup.Run(ctx)
}

// KillNow makes workers being stopped skip the rest of their stop timeout.
// It may be called once.
func (p *Pool) KillNow() { close(p.kill) }

// WorkerStatus is one worker's state.
type WorkerStatus struct {
	Index int
	supervisor.Status
}

// Status returns every worker's state, by index.
func (p *Pool) Status() []WorkerStatus {
	all := p.sup.Status()
	out := make([]WorkerStatus, 0, len(all))
	for _, st := range all {
		i, err := strconv.Atoi(strings.TrimPrefix(st.Name, p.cfg.Instance+"-"))
		if err != nil {
			continue
		}
		out = append(out, WorkerStatus{Index: i, Status: st})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Index < out[b].Index })
	return out
}

// Desired is the number of workers the pool keeps running.
func (p *Pool) Desired() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.desired
}

// Scale changes the number of workers to n while the pool runs: workers
// 0..n-1 that run already are left alone, new ones start, and those from n
// up are stopped as on shutdown. It returns once the removed ones stopped.
func (p *Pool) Scale(ctx context.Context, n int) error {
	if n < 1 {
		return fmt.Errorf("cannot scale to %d workers: at least 1", n)
	}
	p.scaleMu.Lock()
	defer p.scaleMu.Unlock()
	p.mu.Lock()
	cur := p.desired
	p.desired = n
	p.mu.Unlock()
	for i := cur; i < n; i++ {
		p.sup.Add(ContainerID(p.cfg.Instance, i), p.newWorker(i))
	}
	var g errgroup.Group
	for i := n; i < cur; i++ {
		g.Go(func() error { return p.sup.Remove(ctx, ContainerID(p.cfg.Instance, i)) })
	}
	err := g.Wait()
	p.mu.Lock()
	for i := n; i < cur; i++ {
		delete(p.workers, i)
	}
	p.mu.Unlock()
	return err
}

// Restart stops worker i's container and starts a new one at once.
func (p *Pool) Restart(i int) error {
	if i < 0 || i >= p.Desired() {
		return fmt.Errorf("no worker %d: the pool has workers 0 to %d", i, p.Desired()-1)
	}
	return p.sup.Restart(ContainerID(p.cfg.Instance, i))
}

// usable reports, as a failure no restart can fix, a rootfs or runc that
// disappeared.
func (p *Pool) usable() error {
	for _, path := range []string{p.cfg.Template.Rootfs, p.rt.Runc} {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("%s is gone (%w): restart mrtd to unpack it again", path, supervisor.ErrDoNotRestart)
		}
	}
	return nil
}

func (p *Pool) logEvent(ev supervisor.Event) {
	index, _ := strconv.Atoi(strings.TrimPrefix(ev.Name, p.cfg.Instance+"-"))
	kv := []any{"worker", index, "containerId", ev.Name, "restarts", ev.Restarts}
	switch ev.State {
	case supervisor.Running:
		p.log.Info("worker running", append(kv, "pid", ev.Pid)...)
	case supervisor.BackingOff:
		var start *container.StartError
		if errors.As(ev.LastExit, &start) {
			p.log.Error(nil, "worker failed to start", append(kv, "reason", start.Reason, "backoff", ev.Delay.Round(time.Millisecond).String())...)
			return
		}
		exit := "exit status 0"
		if ev.LastExit != nil {
			exit = ev.LastExit.Error()
		}
		p.log.Info("worker exited", append(kv, "exit", exit, "backoff", ev.Delay.Round(time.Millisecond).String())...)
	case supervisor.Stopped:
		if errors.Is(ev.LastExit, supervisor.ErrDoNotRestart) {
			p.log.Error(ev.LastExit, "worker cannot run", kv...)
			return
		}
		p.log.V(1).Info("worker stopped", kv...)
	}
}
