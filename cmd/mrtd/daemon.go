package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/daemon"
)

const daemonUsage = usage + `
mrtd without a command keeps --workers rootless containers running COMMAND
(default: the default rootfs's demo worker, ` + config.DemoWorker + `), each
with its own id and hostname <instance>-<index> and MRTD_WORKER=<index>,
MRTD_INSTANCE=<instance> in its environment, all from one read-only rootfs.
Workers that exit are restarted, at once after a first failure, then with
per-worker exponential backoff; with --health-cmd (or the image's
HEALTHCHECK), a worker whose check fails --health-retries times in a row is
restarted as unhealthy. SIGTERM
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
	st, err := config.LoadSettings(args, os.LookupEnv)
	if errors.Is(err, config.ErrHelp) {
		fmt.Fprint(stdout, daemonUsage)
		printFlags(stdout, st.Flags)
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	log := newLogger(os.Stderr, st.Config.LogLevel, st.Config.LogFormat).WithValues("instance", st.Pool.Instance)
	if status, entered, err := daemon.EnterUserNamespace(st.Config, log); err != nil {
		return failDaemon(stderr, err)
	} else if entered {
		return status
	}
	cur := st
	err = daemon.Run(context.Background(), daemon.Options{
		Settings: daemonSettings(st),
		Reload: func() (daemon.Settings, error) {
			next, err := config.LoadSettings(args, os.LookupEnv)
			if err != nil {
				return daemon.Settings{}, err
			}
			cur.Flags.VisitAll(func(f *flag.Flag) {
				if nf := next.Flags.Lookup(f.Name); !liveKeys[f.Name] && nf != nil && nf.Value.String() != f.Value.String() {
					log.Info("setting changed; it takes effect when mrtd restarts", "key", f.Name, "running", f.Value.String(), "new", nf.Value.String())
				}
			})
			cur = next
			return daemonSettings(next), nil
		},
		Log: log,
	})
	if err != nil {
		return failDaemon(stderr, err)
	}
	return 0
}

// daemonSettings is what the daemon runs of st.
func daemonSettings(st *config.Settings) daemon.Settings {
	_, set := st.Sources["stop-signal"]
	health := map[string]bool{}
	for k := range st.Sources {
		if strings.HasPrefix(k, "health-") {
			health[k] = true
		}
	}
	return daemon.Settings{Container: st.Config, Pool: st.Pool, Workers: st.Workers, StopSignalSet: set, HealthSet: health}
}

// failDaemon prints err as one line: 2 for usage errors, 1 otherwise.
func failDaemon(stderr io.Writer, err error) int {
	if fail(stderr, err) == exitUsage {
		return exitUsage
	}
	return 1
}
