package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/pool"
	"github.com/mrt-project/mrt/reaper"
	"github.com/mrt-project/mrt/supervisor"
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
	cfg, err := config.Default(os.Geteuid(), os.Getenv)
	if err != nil {
		return fail(stderr, err)
	}
	pc := config.DefaultPool()
	var env, mounts stringList
	fs := flag.NewFlagSet("mrtd", flag.ContinueOnError)
	containerFlags(fs, &cfg, &env)
	fs.IntVar(&pc.Workers, "workers", pc.Workers, fmt.Sprintf("how many worker containers to keep running (1 to %d)", config.MaxWorkers))
	fs.StringVar(&pc.Instance, "instance", pc.Instance, "`name` of this pool: containers are <name>-<index>; two instances can share a runtime dir")
	fs.Var(&mounts, "mount", "bind-mount host `SRC[:DST[:ro]]` into every worker (repeatable; DST defaults to SRC and must exist in the rootfs)")
	fs.StringVar(&pc.EnvFile, "env-file", pc.EnvFile, "read KEY=VALUE lines from `FILE` (before --env)")
	fs.StringVar(&pc.Restart, "restart", pc.Restart, "`always` restart workers, or only on-failure (non-zero exit or signal)")
	fs.StringVar(&pc.StopSignal, "stop-signal", pc.StopSignal, "`signal` that asks a worker to stop")
	fs.DurationVar(&pc.StopTimeout, "stop-timeout", pc.StopTimeout, "how long workers get to stop before SIGKILL")
	fs.DurationVar(&pc.BackoffMin, "backoff-min", pc.BackoffMin, "first restart delay of a failing worker")
	fs.DurationVar(&pc.BackoffMax, "backoff-max", pc.BackoffMax, "longest restart delay")
	if err := parseFlags(fs, args); errors.Is(err, errHelp) {
		fmt.Fprint(stdout, daemonUsage)
		printFlags(stdout, fs)
		return 0
	} else if err != nil {
		return fail(stderr, err)
	}
	pc.Mounts = mounts
	if err := pc.Validate(); err != nil {
		return fail(stderr, err)
	}
	if pc.EnvFile != "" {
		fileEnv, err := config.ReadEnvFile(pc.EnvFile)
		if err != nil {
			return fail(stderr, err)
		}
		env = append(fileEnv, env...)
	}
	cfg.Env = env
	cfg.Args = fs.Args()
	if len(cfg.Args) == 0 {
		if cfg.Rootfs != "" {
			return fail(stderr, &config.UsageError{Err: errors.New("no command given: with --rootfs, put the worker command after --")})
		}
		cfg.Args = []string{DemoWorker}
	}
	if err := cfg.Validate(); err != nil {
		return fail(stderr, err)
	}
	log := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat).WithValues("instance", pc.Instance)
	if err := daemon(context.Background(), cfg, pc, log); err != nil {
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

// daemon runs the pool until SIGTERM or SIGINT.
func daemon(ctx context.Context, cfg config.Config, pc config.Pool, log logr.Logger) error {
	p, rt, err := setup(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer p.Close()

	var binds []container.Bind
	for _, m := range pc.Mounts {
		mnt, _ := config.ParseMount(m) // validated
		if fi, err := os.Stat(filepath.Join(p.rootfs, mnt.Destination)); err != nil || !fi.IsDir() && mustBeDir(mnt.Source) {
			return &config.UsageError{Err: fmt.Errorf("--mount %s: %s does not exist in the rootfs; mount points must exist there (the rootfs is shared and read-only): pick a destination that exists, such as /mnt, /srv or /var/archivematica/sharedDirectory", m, mnt.Destination)}
		}
		binds = append(binds, container.Bind{Source: mnt.Source, Destination: mnt.Destination, ReadOnly: mnt.ReadOnly})
	}

	lock, err := lockInstance(cfg.RuntimeDir, pc.Instance)
	if err != nil {
		return err
	}
	defer lock.Close()

	if err := reaper.SetSubreaper(); err != nil {
		return fmt.Errorf("becoming a child subreaper: %w", err)
	}
	rp := reaper.New()
	container.UseReaper(rp)
	reaperCtx, stopReaper := context.WithCancel(context.Background())
	defer stopReaper()
	reaped := make(chan error, 1)
	go func() { reaped <- rp.Run(reaperCtx) }()

	// Containers of this instance in the runtime dir were left by an mrtd
	// that crashed: we hold the instance lock.
	removed, err := rt.RemoveStale(ctx, pc.Instance+"-")
	for _, id := range removed {
		log.Info("removed container left by an earlier mrtd", "containerId", id)
	}
	if err != nil {
		return err
	}

	uid, gid := hostIDs(cfg)
	stopSignal, _ := config.ParseSignal(pc.StopSignal)
	policy := supervisor.Always
	if pc.Restart == config.RestartOnFailure {
		policy = supervisor.OnFailure
	}
	var notify *notifier
	var hook func(supervisor.Event)
	if notifyEnabled() {
		notify = newNotifier(log.WithName("systemd"), pc.Workers)
		hook = notify.event
	}
	pl := pool.New(pool.Config{
		Workers:  pc.Workers,
		Instance: pc.Instance,
		Template: container.Options{
			Rootfs:            p.rootfs,
			Args:              cfg.Args,
			Env:               cfg.Env,
			Cwd:               cfg.Workdir,
			UID:               uid,
			GID:               gid,
			Network:           cfg.Network,
			SeccompUnconfined: cfg.Seccomp == config.SeccompUnconfined,
			NoFile:            noFileLimit(),
			Binds:             binds,
		},
		StopSignal:  stopSignal,
		StopTimeout: pc.StopTimeout,
		Supervisor: supervisor.Spec{
			BackoffMin: pc.BackoffMin,
			BackoffMax: pc.BackoffMax,
			Restart:    policy,
			Hook:       hook,
		},
	}, rt, rp, log.WithName("pool"))

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
	if notify != nil {
		control.scaled = notify.setDesired
	}

	poolDone := make(chan struct{})
	var g errgroup.Group
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
				log.Info("reload requested: there is no config file to re-read yet; the running configuration stays")
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
		// First signal: stop gracefully. Second: kill at once. Either
		// way, this ends when the pool has stopped.
		select {
		case sig := <-sigs:
			log.Info("stopping workers", "signal", sig.String(), "stopTimeout", pc.StopTimeout.String())
			if notify != nil {
				notify.stopping()
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
	stopReaper()
	<-reaped
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
		kv := []any{"containerId", st.Name, "state", string(st.State), "pid", st.Pid, "restarts", st.Restarts,
			"since", st.Since.Format(time.RFC3339Nano)}
		if st.LastExit != nil {
			kv = append(kv, "lastExit", st.LastExit.Error())
		}
		if st.State == supervisor.BackingOff {
			kv = append(kv, "backoffUntil", st.BackoffUntil.Format(time.RFC3339Nano))
		}
		log.Info("worker status", kv...)
	}
}

func mustBeDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// instanceLock is held for the daemon's lifetime.
type instanceLock struct{ f *os.File }

func (l *instanceLock) Close() error { return l.f.Close() }

// lockInstance makes sure one daemon runs an instance in a runtime dir.
func lockInstance(runtimeDir, instance string) (*instanceLock, error) {
	path := filepath.Join(runtimeDir, instance+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &container.RuntimeDirError{Dir: runtimeDir, Err: err}
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		data, _ := os.ReadFile(path)
		f.Close()
		pid := strings.TrimSpace(string(data))
		if pid == "" {
			pid = "?"
		}
		return nil, fmt.Errorf("another mrtd (pid %s) is running instance %s: stop it, or pass another --instance", pid, instance)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &instanceLock{f: f}, nil
}
