package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/pool"
)

// DemoWorker is the default rootfs's demo worker, the pool's default
// command.
const DemoWorker = "/usr/local/bin/mrtd-demo-worker"

const daemonUsage = usage + `
mrtd without a command keeps --workers rootless containers running COMMAND
(default: the default rootfs's demo worker, ` + DemoWorker + `), each
with its own id and hostname <instance>-<index> and MRTD_WORKER=<index>,
MRTD_INSTANCE=<instance> in its environment, all from one read-only rootfs.
Workers that exit are restarted with per-worker exponential backoff. SIGTERM
or SIGINT stops them all (the stop signal, then SIGKILL after --stop-timeout;
a second signal kills at once). SIGUSR1 logs each worker's state. Containers
left by an mrtd that crashed are removed at start.

Exit status: 0 after a clean stop; 1 when the pool cannot run (another mrtd
runs the instance, the rootfs or runc is unusable); 2 for a usage error.
mrtd run exits with its command's status (128+N when killed by signal N), 125
when mrtd or runc failed, 126 when the command cannot be executed, 127 when it
is not in the rootfs, 2 for a usage error.

Flags:
`

// daemonCommand runs the pool. args are the arguments after "mrtd".
func daemonCommand(args []string, stdout, stderr io.Writer) int {
	st, err := loadSettings(args, os.LookupEnv)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, daemonUsage)
		printFlags(stdout, st.fs)
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	log := newLogger(os.Stderr, st.cfg.LogLevel, st.cfg.LogFormat).WithValues("instance", st.pool.Instance)
	if err := daemon(context.Background(), st, args, log); err != nil {
		return failDaemon(stderr, err)
	}
	return 0
}

// failDaemon prints err as one line: 2 for usage errors, 1 otherwise.
func failDaemon(stderr io.Writer, err error) int {
	if fail(stderr, err) == exitUsage {
		return exitUsage
	}
	return 1
}

// runtimeDirCheckInterval is how often the daemon checks that its runtime
// dir is still there: a stat or two a second.
const runtimeDirCheckInterval = time.Second

// daemon runs the pool until SIGTERM or SIGINT.
func daemon(ctx context.Context, st *settings, args []string, log logr.Logger) error {
	cfg, pc := st.cfg, st.pool
	p, rt, err := setup(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer p.Close()

	tmpl, err := workerTemplate(st, p.rootfs)
	if err != nil {
		return err
	}

	lock, err := lockInstance(cfg.RuntimeDir, pc.Instance)
	if err != nil {
		return err
	}
	defer lock.Close()

	stopSignal, _ := config.ParseSignal(pc.StopSignal)
	var hooks []func(pool.Event)
	var notify *notifier
	if notifyEnabled() {
		notify = newNotifier(log.WithName("systemd"), pc.Workers)
		hooks = append(hooks, notify.event)
	}
	var mtr *metrics
	var metricsLn net.Listener
	if pc.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", pc.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		defer metricsLn.Close()
		mtr = newMetrics(pc.Workers, p.runcVersion, p.rootfsDigest)
		hooks = append(hooks, mtr.event)
	}
	hook := func(ev pool.Event) {
		for _, h := range hooks {
			h(ev)
		}
	}
	pl, err := pool.New(pool.Config{
		Workers:     pc.Workers,
		Instance:    pc.Instance,
		Template:    tmpl,
		WorkerEnv:   workerEnv(st.workers),
		StopSignal:  stopSignal,
		StopTimeout: pc.StopTimeout,
		Restart:     pool.RestartPolicy(pc.Restart),
		BackoffMin:  pc.BackoffMin,
		BackoffMax:  pc.BackoffMax,
		Hook:        hook,
	}, rt, log.WithName("pool"))
	if err != nil {
		return err
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	defer signal.Stop(sigs)

	log.Info("starting workers", "workers", pc.Workers, "command", strings.Join(cfg.Args, " "), "rootfs", p.rootfs)
	poolCtx, stopPool := context.WithCancel(ctx)
	defer stopPool()
	ln, err := listenControl(cfg.RuntimeDir, pc.Instance)
	if err != nil {
		return err
	}
	control := &controlServer{ln: ln, pool: pl, instance: pc.Instance, log: log.WithName("control")}
	control.scaled = func(n int) {
		if notify != nil {
			notify.setDesired(n)
		}
		if mtr != nil {
			mtr.setDesired(n)
		}
	}

	poolDone := make(chan struct{})
	var g errgroup.Group
	if mtr != nil {
		g.Go(func() error {
			mctx, stopMetrics := context.WithCancel(ctx)
			go func() { <-poolDone; stopMetrics() }()
			log.Info("serving metrics", "addr", metricsLn.Addr().String())
			mtr.serve(mctx, metricsLn, log.WithName("metrics"))
			return nil
		})
	}
	g.Go(func() error {
		go func() {
			<-poolDone
			ln.Close() // also removes the socket file
		}()
		control.serve(ctx)
		return nil
	})
	if iv := watchdogInterval(); notify != nil && iv > 0 {
		wdCtx, stopWatchdog := context.WithCancel(ctx)
		g.Go(func() error {
			go func() { <-poolDone; stopWatchdog() }()
			notify.watchdog(wdCtx, iv, func() { pl.Status() })
			return nil
		})
	}
	g.Go(func() error {
		// SIGUSR1 logs every worker's state, as a status view until the
		// control socket exists.
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, unix.SIGUSR1)
		defer signal.Stop(usr1)
		// SIGHUP is systemd's reload. mrtd reads no config file yet, so
		// there is nothing to re-read; answering keeps it from killing
		// mrtd, and systemd sees the reload complete.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, unix.SIGHUP)
		defer signal.Stop(hup)
		for {
			select {
			case <-usr1:
				logStatus(log, pl)
			case <-hup:
				if notify != nil {
					notify.reloading()
				}
				if next := reload(ctx, log, st, args, p.rootfs, pl, control.scaled); next != nil {
					st = next
				}
				if notify != nil {
					notify.reloaded()
				}
			case <-poolDone:
				return nil
			}
		}
	})
	g.Go(func() error {
		defer close(poolDone)
		return pl.Run(poolCtx)
	})
	g.Go(func() error {
		// The runtime dir removed under the pool: stop the workers and
		// exit 1, so that systemd starts a daemon that sets it up anew.
		wctx, stopWatch := context.WithCancel(ctx)
		go func() { <-poolDone; stopWatch() }()
		if err := lock.watch(wctx, rt, runtimeDirCheckInterval); err != nil {
			log.Error(err, "runtime dir lost, stopping workers")
			if notify != nil {
				notify.stopping(pc.StopTimeout)
			}
			stopPool()
			return err
		}
		return nil
	})
	g.Go(func() error {
		// First signal: stop gracefully. Second: kill at once. Either
		// way, this ends when the pool has stopped.
		select {
		case sig := <-sigs:
			log.Info("stopping workers", "signal", sig.String(), "stopTimeout", pc.StopTimeout.String())
			if notify != nil {
				notify.stopping(pc.StopTimeout)
			}
			stopPool()
		case <-poolDone:
			return nil
		}
		select {
		case sig := <-sigs:
			log.Info("killing workers now", "signal", sig.String())
			pl.KillNow()
		case <-poolDone:
		}
		return nil
	})
	err = g.Wait()
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
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
		log.Info("worker status", kv...)
	}
}

// workerTemplate is every worker's container, from the settings. It checks
// the command, the working directory and the mounts against the rootfs and
// the host: what would make every start fail is a usage error before any
// worker starts.
func workerTemplate(st *settings, rootfs string) (container.Options, error) {
	uid, gid := hostIDs(st.cfg)
	root, err := container.OpenRoot(rootfs)
	if err != nil {
		return container.Options{}, err
	}
	defer root.Close()
	prot := protected{exec: []string{st.cfg.CacheDir, rootfs}, runtimeDir: st.cfg.RuntimeDir}
	if st.cfg.Runc != "" {
		prot.exec = append(prot.exec, st.cfg.Runc)
	}
	var binds []container.Bind
	for _, m := range st.pool.Mounts {
		mnt, err := config.ParseMount(m)
		if err != nil {
			return container.Options{}, err
		}
		if err := checkMount(root, m, mnt, uid, gid, prot); err != nil {
			return container.Options{}, err
		}
		binds = append(binds, container.Bind{Source: mnt.Source, Destination: mnt.Destination, ReadOnly: mnt.ReadOnly})
	}
	o := container.Options{
		Rootfs:            rootfs,
		Args:              st.cfg.Args,
		Env:               st.cfg.Env,
		Cwd:               st.cfg.Workdir,
		UID:               uid,
		GID:               gid,
		Network:           st.cfg.Network,
		SeccompUnconfined: st.cfg.Seccomp == config.SeccompUnconfined,
		NoFile:            noFileLimit(),
		Binds:             binds,
	}
	if err := checkRoot(o); err != nil {
		var cmd *container.CommandError
		if errors.As(err, &cmd) {
			// Every worker would fail the same way: a usage error, not a
			// crash loop.
			return container.Options{}, &config.UsageError{Err: err}
		}
		return container.Options{}, err
	}
	return o, nil
}
