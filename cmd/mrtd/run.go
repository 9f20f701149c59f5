package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/daemon"
	"github.com/mrt-project/mrt/internal/userns"
)

const runUsage = `Usage: mrtd run [flags] [--] COMMAND [ARG...]

Run COMMAND in a new rootless container and exit with its status. The
container's stdout and stderr are mrtd's; its stdin is /dev/null. The first
SIGINT or SIGTERM is forwarded to it; a second one kills it. The container
and its bundle are removed when it exits.

Flags:
`

func runCommand(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Default(userns.EUID(), os.Getenv)
	if err != nil {
		return fail(stderr, err)
	}
	var env config.StringList
	fs := config.RunFlags(&cfg, &env)
	if err := config.ParseFlags(fs, args); errors.Is(err, config.ErrHelp) {
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
	if cfg.Env, err = config.RunEnv(cfg.Env); err != nil {
		return fail(stderr, err)
	}
	log := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if status, entered, err := daemon.EnterUserNamespace(cfg, log); err != nil {
		return fail(stderr, err)
	} else if entered {
		return status
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	defer signal.Stop(sigs)

	status, err := daemon.RunOne(context.Background(), cfg, log, daemon.Stdio{Stdout: os.Stdout, Stderr: os.Stderr}, sigs)
	if err != nil {
		return fail(stderr, err)
	}
	return status
}
