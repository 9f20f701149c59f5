package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/oklog/run"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/control"
	"github.com/mrt-project/mrt/internal/systemd"
	"github.com/mrt-project/mrt/pool"
)

// Settings are what a daemon runs.
type Settings struct {
	// Container is every worker's container.
	Container config.Config
	Pool      config.Pool
	// Workers holds the [worker.N] sections: settings for worker N alone.
	Workers map[int]config.WorkerFile
	// StopSignalSet is true when Pool.StopSignal was set (--stop-signal,
	// MRTD_STOP_SIGNAL or the config file) rather than defaulted: it then
	// wins over an image's StopSignal.
	StopSignalSet bool
	// HealthSet holds the --health-* keys set (flag, MRTD_* or the config
	// file): each wins over the image's HEALTHCHECK field.
	HealthSet map[string]bool
}

// Options configure Run.
type Options struct {
	Settings Settings
	// Reload re-reads the settings on SIGHUP (systemd's reload); an error
	// keeps the running ones. Without it, SIGHUP re-applies them.
	Reload func() (Settings, error)
	Log    logr.Logger
}

// runtimeDirCheckInterval is how often the daemon checks that its runtime
// dir is still there: a stat or two a second.
const runtimeDirCheckInterval = time.Second

// Run runs the pool until ctx is cancelled or a SIGTERM or SIGINT comes,
// then stops the workers (a second signal kills them at once) and returns
// once every container is deleted. Its lifetime is a group of actors, each
// with a run and an interrupt (oklog/run): the pool, the signals, the
// control server, the metrics server, the systemd watchdog, the runtime
// dir watch and the SIGHUP/SIGUSR1 handler. The first to return ends the
// others; Run returns its error, nil after a stop.
func Run(ctx context.Context, opts Options) error {
	st, log := opts.Settings, opts.Log
	cfg, pc := st.Container, st.Pool
	env, err := setup(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer env.Close()
	tmpl, err := workerTemplate(st, env, log)
	if err != nil {
		return err
	}
	perWorker, err := newPerWorker(st, env, tmpl)
	if err == nil {
		err = perWorker.check(tmpl, pc.Workers)
	}
	if err != nil {
		return err
	}
	health, err := healthCheck(st, env.image, tmpl, log)
	if err != nil {
		return err
	}
	lock, err := lockInstance(cfg.RuntimeDir, pc.Instance)
	if err != nil {
		return err
	}
	defer lock.Close()

	// What follows the pool: systemd and the metrics.
	var hooks []func(pool.Event)
	var healthHooks []func(pool.HealthEvent)
	var notify *systemd.Notifier
	if systemd.NotifyEnabled() {
		notify = systemd.NewNotifier(log.WithName("systemd"), pc.Workers)
		hooks = append(hooks, func(ev pool.Event) { notify.Worker(ev.Name, workerState(ev)) })
		if health != nil {
			// READY=1 once every worker is healthy (Notify=healthy).
			notify.WaitHealthy()
			healthHooks = append(healthHooks, func(ev pool.HealthEvent) {
				notify.Health(ev.Name, ev.Health == pool.HealthHealthy)
			})
		}
	}
	var mtr *metrics
	var metricsLn net.Listener
	if pc.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", pc.MetricsAddr); err != nil {
			return &MetricsListenError{Err: err}
		}
		defer metricsLn.Close()
		mtr = newMetrics(pc.Workers, env.RuncVersion, env.RootfsDigest)
		hooks = append(hooks, mtr.event)
		healthHooks = append(healthHooks, mtr.health)
	}
	scaled := func(n int) {
		if notify != nil {
			notify.SetDesired(n)
		}
		if mtr != nil {
			mtr.setDesired(n)
		}
	}
	pl, err := pool.New(pool.Config{
		Workers:     pc.Workers,
		Instance:    pc.Instance,
		Template:    tmpl,
		WorkerEnv:   workerEnv(st.Workers),
		PerWorker:   perWorker.hook(),
		StopSignal:  stopSignal(st, env.image, log),
		StopTimeout: pc.StopTimeout,
		Restart:     pool.RestartPolicy(pc.Restart),
		BackoffMin:  pc.BackoffMin,
		BackoffMax:  pc.BackoffMax,
		Standby:     pc.Standby,
		Hook: func(ev pool.Event) {
			for _, h := range hooks {
				h(ev)
			}
		},
		Health: health,
		HealthHook: func(ev pool.HealthEvent) {
			for _, h := range healthHooks {
				h(ev)
			}
		},
	}, env.runtime, log.WithName("pool"))
	if err != nil {
		return err
	}
	ln, err := control.Listen(control.SocketPath(cfg.RuntimeDir, pc.Instance))
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	srv := &control.Server{Pool: poolControl{pl}, Instance: pc.Instance, MaxWorkers: config.MaxWorkers,
		Log: log.WithName("control"), Scaled: scaled, Labels: imageLabels(env.image)}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	defer signal.Stop(sigs)
	stopping := func() {
		if notify != nil {
			notify.Stopping(pc.StopTimeout)
		}
	}

	log.Info("starting workers", "workers", pc.Workers, "command", strings.Join(cfg.Args, " "), "rootfs", env.Rootfs)
	var g run.Group
	{
		// The pool. Interrupted, it stops every worker gracefully; a
		// second SIGINT or SIGTERM meanwhile kills them at once.
		poolCtx, stopPool := context.WithCancel(context.WithoutCancel(ctx))
		poolDone := make(chan struct{})
		g.Add(func() error {
			defer close(poolDone)
			return pl.Run(poolCtx)
		}, func(error) {
			stopPool()
			go func() {
				select {
				case sig := <-sigs:
					log.Info("killing workers now", "signal", sig.String())
					pl.KillNow()
				case <-poolDone:
				}
			}()
		})
	}
	{
		// The first SIGINT or SIGTERM, or ctx: a graceful stop.
		done := make(chan struct{})
		g.Add(func() error {
			select {
			case sig := <-sigs:
				log.Info("stopping workers", "signal", sig.String(), "stopTimeout", pc.StopTimeout.String())
				stopping()
			case <-ctx.Done():
				log.Info("stopping workers", "stopTimeout", pc.StopTimeout.String())
				stopping()
			case <-done:
			}
			return nil
		}, func(error) { close(done) })
	}
	{
		// The runtime dir removed under the pool: stop the workers and
		// exit 1, so that systemd starts a daemon that sets it up anew.
		wctx, stopWatch := context.WithCancel(context.Background())
		g.Add(func() error {
			if err := lock.watch(wctx, env.runtime, runtimeDirCheckInterval); err != nil {
				log.Error(err, "runtime dir lost, stopping workers")
				stopping()
				return err
			}
			return nil
		}, func(error) { stopWatch() })
	}
	{
		sctx, stopServer := context.WithCancel(context.Background())
		g.Add(func() error { return srv.Run(sctx, ln) }, func(error) { stopServer() })
	}
	if mtr != nil {
		mctx, stopMetrics := context.WithCancel(context.Background())
		g.Add(func() error {
			log.Info("serving metrics", "addr", metricsLn.Addr().String())
			mtr.serve(mctx, metricsLn, log.WithName("metrics"))
			return nil
		}, func(error) { stopMetrics() })
	}
	if iv := systemd.WatchdogInterval(); notify != nil && iv > 0 {
		wdCtx, stopWatchdog := context.WithCancel(context.Background())
		g.Add(func() error {
			notify.Watchdog(wdCtx, iv, func() { pl.Status() })
			return nil
		}, func(error) { stopWatchdog() })
	}
	{
		// SIGUSR1 logs every worker's state; SIGHUP reloads.
		usr1 := make(chan os.Signal, 1)
		hup := make(chan os.Signal, 1)
		signal.Notify(usr1, unix.SIGUSR1)
		signal.Notify(hup, unix.SIGHUP)
		done := make(chan struct{})
		g.Add(func() error {
			defer signal.Stop(usr1)
			defer signal.Stop(hup)
			for {
				select {
				case <-usr1:
					logStatus(log, pl)
				case <-hup:
					if notify != nil {
						notify.Reloading()
					}
					st = reload(ctx, log, st, opts.Reload, env, pl, scaled)
					if notify != nil {
						notify.Reloaded()
					}
				case <-done:
					return nil
				}
			}
		}, func(error) { close(done) })
	}
	if err := g.Run(); err != nil {
		var gone *pool.UnusableError
		if errors.As(err, &gone) {
			if gone.Path == env.Rootfs && env.RootfsDigest == "dir" {
				return fmt.Errorf("%w; restore it, then start mrtd again", err)
			}
			return fmt.Errorf("%w; start mrtd again to unpack it anew", err)
		}
		return err
	}
	log.Info("stopped")
	return nil
}

// MetricsListenError is a metrics address that cannot be listened on.
type MetricsListenError struct{ Err error }

func (e *MetricsListenError) Error() string { return "metrics address: " + e.Err.Error() }
func (e *MetricsListenError) Unwrap() error { return e.Err }

// workerState is what systemd's status counts of a pool event.
func workerState(ev pool.Event) systemd.WorkerState {
	switch {
	case ev.State == pool.Starting && ev.Restarts > 0:
		return systemd.WorkerRestarting
	case ev.State == pool.Starting:
		return systemd.WorkerStarting
	case ev.State == pool.Running:
		return systemd.WorkerRunning
	default:
		return systemd.WorkerDown
	}
}

// logStatus logs the daemon's own counts and each worker's state.
func logStatus(log logr.Logger, pl *pool.Pool) {
	fds, _ := os.ReadDir("/proc/self/fd")
	log.Info("status", "goroutines", runtime.NumGoroutine(), "openFds", len(fds))
	for _, st := range pl.Status() {
		kv := []any{"containerId", st.ContainerID, "state", string(st.State), "pid", st.Pid, "restarts", st.Restarts,
			"since", st.Since.Format(time.RFC3339Nano)}
		if st.LastExit != nil {
			kv = append(kv, "lastExit", st.LastExit.Error())
		}
		if st.State == pool.BackingOff {
			kv = append(kv, "backoffUntil", st.BackoffUntil.Format(time.RFC3339Nano))
		}
		if h := st.Health; h.Health != pool.HealthNone {
			kv = append(kv, "health", string(h.Health), "failingStreak", h.FailingStreak)
		}
		log.Info("worker status", kv...)
	}
}

// poolControl is the pool as the control server sees it.
type poolControl struct{ *pool.Pool }

func (p poolControl) Status() []control.WorkerStatus {
	all := p.Pool.Status()
	out := make([]control.WorkerStatus, 0, len(all))
	for _, st := range all {
		w := control.WorkerStatus{Worker: st.Worker, ContainerID: st.ContainerID, State: string(st.State), Pid: st.Pid,
			Since: st.Since, Restarts: st.Restarts, Reason: string(st.Reason), Health: healthStatus(st.Health),
			Standby: st.Standby}
		if st.LastExit != nil {
			w.LastExit = st.LastExit.Error()
		} else if st.Reason == pool.ReasonExited0 {
			w.LastExit = "exit status 0"
		}
		out = append(out, w)
	}
	return out
}
