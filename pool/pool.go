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
	WorkerEnv map[int][]string
	// PerWorker, when set, is applied to each worker's container after
	// the defaults above; see PerWorker.
	PerWorker   PerWorker
	StopSignal  unix.Signal
	StopTimeout time.Duration
	// Restart is the restart policy; RestartAlways when empty.
	Restart RestartPolicy
	// BackoffMin and BackoffMax bound a failing worker's restart delay
	// (100ms and 1m when zero).
	BackoffMin, BackoffMax time.Duration
	// Standby keeps each worker's next container created (runc create)
	// while the current one runs: a restart then starts it (runc start).
	Standby bool
	// Hook, when set, receives every change of a worker's state. It is
	// called synchronously and must not block.
	Hook func(Event)
	// Health, when set, is the workers' health check.
	Health *HealthCheck
	// HealthHook, when set, receives every health check's result. It is
	// called synchronously and must not block.
	HealthHook func(HealthEvent)
}

// PerWorker makes worker i's container from o, the template with the
// pool's defaults applied (Hostname, WorkerEnv[i], MRTD_WORKER and
// MRTD_INSTANCE), by changing o in place. It is the one place where the
// workers' containers are made to differ beyond those defaults: the
// daemon renders templated env values and mount sources there, and
// per-worker settings belong there too.
//
// It must be deterministic, the same i and o giving the same options:
// Reconfigure restarts exactly the workers whose options changed
// (reflect.DeepEqual). o.Env is the worker's own copy; o's other slices
// share their arrays with the template, so replace them (slices.Clone)
// rather than change their elements. It is called with the pool's lock
// held and must not call the pool. An error fails that worker's start
// (logged as a failed start, with backoff); each later try calls PerWorker
// again, so that what it lacked (a worker's own directory, say) may be
// supplied meanwhile. The other workers run.
type PerWorker func(i int, o *container.Options) error

// Pool is N workers under one supervisor.
type Pool struct {
	cfg    Config
	rt     Runtime
	reaper *reaper.Reaper
	log    logr.Logger
	sup    *supervisor.Supervisor
	kill   chan struct{}

	scaleMu sync.Mutex // serializes Scale
	// bg counts the deletes and standbys running in the background.
	bg      sync.WaitGroup
	mu      sync.Mutex
	desired int
	workers map[int]*worker // by index; their opts are guarded by mu
}

// New returns a pool of cfg.Workers workers run by rt. It makes this
// process a child subreaper and routes every runc process and container
// init through the pool's reaper: call it once, before any container
// starts, in a process that runs nothing else through go-runc.
func New(cfg Config, rt *container.Runtime, log logr.Logger) (*Pool, error) {
	if err := reaper.SetSubreaper(); err != nil {
		return nil, fmt.Errorf("becoming a child subreaper: %w", err)
	}
	rp := reaper.New()
	container.UseReaper(rp)
	return newPool(cfg, runcRuntime{rt: rt, rp: rp}, rp, log)
}

// newPool returns a pool over any Runtime; rp, when not nil, is run by Run.
func newPool(cfg Config, rt Runtime, rp *reaper.Reaper, log logr.Logger) (*Pool, error) {
	p := &Pool{cfg: cfg, rt: rt, reaper: rp, log: log, kill: make(chan struct{})}
	policy := supervisor.Always
	if cfg.Restart == RestartOnFailure {
		policy = supervisor.OnFailure
	}
	backoffMin, backoffMax := cfg.BackoffMin, cfg.BackoffMax
	if backoffMin <= 0 {
		backoffMin = 100 * time.Millisecond
	}
	if backoffMax <= 0 {
		backoffMax = time.Minute
	}
	p.sup = supervisor.New(supervisor.Spec{
		BackoffMin: backoffMin,
		BackoffMax: backoffMax,
		Restart:    policy,
		Hook:       p.event,
	})
	p.desired = cfg.Workers
	p.workers = map[int]*worker{}
	for i := 0; i < cfg.Workers; i++ {
		if err := p.sup.Add(ContainerID(cfg.Instance, i), p.newWorker(i)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// event turns a supervisor event into the pool's, logs it and passes it on.
func (p *Pool) event(sev supervisor.Event) {
	ev := Event{Status: p.status(sev.Status), Delay: sev.Delay}
	var start *container.StartError
	if errors.As(sev.LastExit, &start) {
		ev.StartReason = start.Reason
	}
	p.logEvent(ev)
	if p.cfg.Hook != nil {
		p.cfg.Hook(ev)
	}
}

// status converts a supervisor status.
func (p *Pool) status(st supervisor.Status) Status {
	i, _ := strconv.Atoi(strings.TrimPrefix(st.Name, p.cfg.Instance+"-"))
	id, fromStandby, standby := st.Name, false, false
	p.mu.Lock()
	w := p.workers[i]
	p.mu.Unlock()
	if w != nil {
		id, fromStandby, standby = w.state()
	}
	return Status{
		Worker:       i,
		Name:         st.Name,
		ContainerID:  id,
		Standby:      standby,
		FromStandby:  fromStandby && st.State == supervisor.Running,
		State:        State(st.State),
		Pid:          st.Pid,
		Since:        st.Since,
		BackoffUntil: st.BackoffUntil,
		Restarts:     st.Restarts,
		LastExit:     st.LastExit,
		Reason:       reason(st.Exited, st.LastExit),
	}
}

// owns reports whether id is one of the instance's container ids,
// <instance>-<index> or <instance>-<index>.1: not another instance's
// whose name starts with this one's and a dash ("api" and "api-v2").
func (p *Pool) owns(id string) bool {
	rest, ok := strings.CutPrefix(id, p.cfg.Instance+"-")
	rest = strings.TrimSuffix(rest, ".1")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ContainerID is the id (and hostname) of worker index of instance.
func ContainerID(instance string, index int) string {
	return instance + "-" + strconv.Itoa(index)
}

func (p *Pool) newWorker(i int) *worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := &worker{index: i, cur: ContainerID(p.cfg.Instance, i), last: 1, pool: p, log: p.log}
	w.opts, w.optsErr = p.options(i)
	p.workers[i] = w
	return w
}

// options is worker i's container, from the current configuration: the
// template, the defaults, then PerWorker. When PerWorker fails it returns
// its error and no options. The caller holds p.mu.
func (p *Pool) options(i int) (container.Options, error) {
	id := ContainerID(p.cfg.Instance, i)
	o := p.cfg.Template
	o.Hostname = id
	o.Env = append(append([]string(nil), o.Env...), p.cfg.WorkerEnv[i]...)
	o.Env = append(o.Env, "MRTD_WORKER="+strconv.Itoa(i), "MRTD_INSTANCE="+p.cfg.Instance)
	if p.cfg.PerWorker != nil {
		if err := p.cfg.PerWorker(i, &o); err != nil {
			return container.Options{}, err // logged with the worker's index
		}
	}
	return o, nil
}

// Reconfigure changes the workers' container template, per-worker
// environments and PerWorker hook. Workers whose container changes (or
// whose PerWorker error does) are restarted with the new one; the others
// keep running untouched. It returns the indexes restarted.
func (p *Pool) Reconfigure(template container.Options, workerEnv map[int][]string, perWorker PerWorker) []int {
	p.mu.Lock()
	p.cfg.Template, p.cfg.WorkerEnv, p.cfg.PerWorker = template, workerEnv, perWorker
	var changed []int
	for i, w := range p.workers {
		o, err := p.options(i)
		if !reflect.DeepEqual(o, w.opts) || errText(err) != errText(w.optsErr) {
			w.opts, w.optsErr = o, err
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

// ErrUnusable, wrapped, is what Run returns when the rootfs or runc became
// unusable: no restart can fix it.
var ErrUnusable = supervisor.ErrDoNotRestart

// Run first removes the containers of the instance that an earlier process
// left in the runtime dir (the caller holds the instance), then keeps the
// workers running until ctx is cancelled, stops them all at once and
// returns when every container is deleted. It returns an error wrapping
// ErrUnusable when the rootfs or runc became unusable.
func (p *Pool) Run(ctx context.Context) error {
	if p.reaper != nil {
		reaperCtx, stopReaper := context.WithCancel(context.WithoutCancel(ctx))
		reaped := make(chan error, 1)
		go func() { reaped <- p.reaper.Run(reaperCtx) }()
		defer func() {
			stopReaper()
			<-reaped
		}()
	}
	removed, err := p.rt.RemoveStale(ctx, p.owns)
	for _, id := range removed {
		p.log.Info("removed container left by an earlier mrtd", "containerId", id)
	}
	if err != nil {
		return err
	}
	err = p.sup.Run(ctx)
	p.mu.Lock()
	ws := make([]*worker, 0, len(p.workers))
	for _, w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	var g sync.WaitGroup
	for _, w := range ws {
		g.Go(w.dropStandby)
	}
	g.Wait()
	p.bg.Wait()
	return err
}

// KillNow makes workers being stopped skip the rest of their stop timeout.
// It may be called once.
func (p *Pool) KillNow() { close(p.kill) }

// Status returns every worker's state, by index.
func (p *Pool) Status() []Status {
	all := p.sup.Status()
	out := make([]Status, 0, len(all))
	for _, st := range all {
		out = append(out, p.status(st))
	}
	p.mu.Lock()
	for i := range out {
		if w := p.workers[out[i].Worker]; w != nil {
			out[i].Health = w.health.get()
		}
	}
	p.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Worker < out[b].Worker })
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
	var addErr error
	for i := cur; i < n; i++ {
		if err := p.sup.Add(ContainerID(p.cfg.Instance, i), p.newWorker(i)); err != nil {
			addErr = errors.Join(addErr, err)
		}
	}
	var g errgroup.Group
	for i := n; i < cur; i++ {
		g.Go(func() error { return p.sup.Remove(ctx, ContainerID(p.cfg.Instance, i)) })
	}
	err := g.Wait()
	p.mu.Lock()
	var gone []*worker
	for i := n; i < cur; i++ {
		if w := p.workers[i]; w != nil {
			gone = append(gone, w)
		}
		delete(p.workers, i)
	}
	p.mu.Unlock()
	var dg sync.WaitGroup
	for _, w := range gone {
		dg.Go(w.dropStandby)
	}
	dg.Wait()
	return errors.Join(addErr, err)
}

// Restart stops worker i's container and starts a new one at once.
func (p *Pool) Restart(i int) error {
	if i < 0 || i >= p.Desired() {
		return fmt.Errorf("no worker %d: the pool has workers 0 to %d", i, p.Desired()-1)
	}
	return p.sup.Restart(ContainerID(p.cfg.Instance, i))
}

// UnusableError is a rootfs or runc that disappeared under the pool.
type UnusableError struct {
	Path string
	Err  error
}

func (e *UnusableError) Error() string {
	return fmt.Sprintf("%s is gone (%v): no worker can start", e.Path, e.Err)
}

// Unwrap makes the error an ErrUnusable.
func (e *UnusableError) Unwrap() []error { return []error{ErrUnusable, e.Err} }

// usable reports, as a failure no restart can fix, a rootfs or runc that
// disappeared.
func (p *Pool) usable(rootfs string) error {
	for _, path := range []string{rootfs, p.rt.Runc()} {
		if _, err := os.Stat(path); err != nil {
			return &UnusableError{Path: path, Err: unwrapPath(err)}
		}
	}
	return nil
}

// errText is err's message, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func unwrapPath(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

func (p *Pool) logEvent(ev Event) {
	kv := []any{"worker", ev.Worker, "containerId", ev.ContainerID, "restarts", ev.Restarts}
	switch ev.State {
	case Running:
		kv = append(kv, "pid", ev.Pid)
		if ev.FromStandby {
			kv = append(kv, "fromStandby", true)
		}
		p.log.Info("worker running", kv...)
	case BackingOff:
		if ev.Reason == ReasonStartFailed {
			p.log.Error(nil, "worker failed to start", append(kv, "reason", ev.StartReason, "backoff", ev.Delay.Round(time.Millisecond).String())...)
			return
		}
		exit := "exit status 0"
		if ev.LastExit != nil {
			exit = ev.LastExit.Error()
		}
		p.log.Info("worker exited", append(kv, "exit", exit, "exitReason", string(ev.Reason), "backoff", ev.Delay.Round(time.Millisecond).String())...)
	case Stopped:
		if errors.Is(ev.LastExit, ErrUnusable) {
			p.log.Error(ev.LastExit, "worker cannot run", kv...)
			return
		}
		p.log.V(1).Info("worker stopped", kv...)
	}
}
