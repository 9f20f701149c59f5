package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/daemon"
)

const runUsage = `Usage: mrtd run [flags] [--] COMMAND [ARG...]

Run COMMAND in a new rootless container and exit with its status. The
container's stdout and stderr are mrtd's; its stdin is /dev/null. The first
SIGINT or SIGTERM is forwarded to it; a second one kills it. The container
and its bundle are removed when it exits.

Flags:
`

func runFlags(cfg *config.Config, env *stringList) *flag.FlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	containerFlags(fs, cfg, env)
	fs.StringVar(&cfg.Hostname, "hostname", cfg.Hostname, "container host`name` (default: the container id)")
	return fs
}

// containerFlags are the flags of run and of the pool: what one container
// is made from.
func containerFlags(fs *flag.FlagSet, cfg *config.Config, env *stringList) {
	fs.StringVar(&cfg.Rootfs, "rootfs", cfg.Rootfs, "use `PATH` as the rootfs: a directory (used in place, read-only) or a .tar/.tar.zst archive (extracted into the cache); default: the embedded rootfs")
	fs.StringVar(&cfg.Runc, "runc", cfg.Runc, "use the runc binary at `PATH` instead of the embedded one")
	fs.StringVar(&cfg.CacheDir, "cache-dir", cfg.CacheDir, "extract runc and rootfs archives into `DIR`")
	fs.StringVar(&cfg.RuntimeDir, "runtime-dir", cfg.RuntimeDir, "keep runc state and bundles in `DIR`")
	fs.IntVar(&cfg.HostUID, "host-uid", cfg.HostUID, "when run as root, the host `uid` container root maps to")
	fs.IntVar(&cfg.HostGID, "host-gid", cfg.HostGID, "when run as root, the host `gid` container root maps to")
	fs.StringVar(&cfg.Network, "network", cfg.Network, "`host` (share the host's network) or none (loopback only)")
	fs.StringVar(&cfg.Seccomp, "seccomp", cfg.Seccomp, "`default` (Docker's default profile) or unconfined")
	fs.Var(env, "env", "set `KEY=VALUE` in the container (repeatable)")
	fs.StringVar(&cfg.Workdir, "workdir", cfg.Workdir, "working `DIR` inside the container (default /)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "`auto` (the journal under systemd, console on a terminal, else JSON), journal, console or json")
}

func runCommand(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Default(os.Geteuid(), os.Getenv)
	if err != nil {
		return fail(stderr, err)
	}
	var env stringList
	fs := runFlags(&cfg, &env)
	if err := parseFlags(fs, args); errors.Is(err, errHelp) {
		fmt.Fprint(stdout, runUsage)
		printFlags(stdout, fs)
		return 0
	} else if err != nil {
		return fail(stderr, err)
	}
	cfg.Env = env
	cfg.Args = fs.Args()
	if err := cfg.Validate(); err != nil {
		return fail(stderr, err)
	}
	log := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	defer signal.Stop(sigs)

	status, err := daemon.RunOne(context.Background(), cfg, log, daemon.Stdio{Stdout: os.Stdout, Stderr: os.Stderr}, sigs)
	if err != nil {
		return fail(stderr, err)
	}
	return status
}
