package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/mrt-project/mrt/daemon"
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
	cur := st
	err = daemon.Run(context.Background(), daemon.Options{
		Settings: st.daemon(),
		Reload: func() (daemon.Settings, error) {
			next, err := loadSettings(args, os.LookupEnv)
			if err != nil {
				return daemon.Settings{}, err
			}
			cur.fs.VisitAll(func(f *flag.Flag) {
				if nf := next.fs.Lookup(f.Name); !liveKeys[f.Name] && nf != nil && nf.Value.String() != f.Value.String() {
					log.Info("setting changed; it takes effect when mrtd restarts", "key", f.Name, "running", f.Value.String(), "new", nf.Value.String())
				}
			})
			cur = next
			return next.daemon(), nil
		},
		Log: log,
	})
	if err != nil {
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
