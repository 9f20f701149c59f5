package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/internal/userns"
)

const usage = `Usage:
  mrtd [flags] [--] [COMMAND [ARG...]]     keep --workers containers running
  mrtd run [flags] [--] COMMAND [ARG...]   run one container in the foreground
  mrtd status [--json]                     each worker's state, pid, uptime, restarts, last exit
  mrtd scale N                             keep N workers; those below N are left alone
  mrtd restart WORKER                      replace one worker's container
  mrtd pull [flags] REF                    fetch an image into the cache; print its digest
  mrtd images [--json]                     the cached images: tags, digest, size, last used, users
  mrtd prune                               remove the cached images no process uses
  mrtd login [flags] HOST | logout HOST    keep or remove a registry's credentials
  mrtd config [flags]                      print the effective settings and their sources
  mrtd version                             print mrtd's and runc's versions

mrtd carries runc and a Debian bookworm rootfs with python3: nothing needs to
be installed. Started by a normal user, container root is that user; started
as root, it is an unprivileged uid (65534 unless --host-uid).

'mrtd run --help' lists the flags of run.
`

func main() {
	// A write to a closed stdout or stderr (a log reader that went away)
	// must fail with EPIPE, not kill mrtd and abandon its containers. A
	// handler, unlike SIG_IGN, is not inherited by runc and the containers.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	// In the user namespace mrtd makes for --user, wait for its maps.
	if err := userns.Init(); err != nil {
		fmt.Fprintf(os.Stderr, "mrtd: %v\n", err)
		os.Exit(exitRunFailed)
	}
	os.Exit(mrtd(os.Args[1:], os.Stdout, os.Stderr))
}

func mrtd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && args[0] != "--version" {
		return daemonCommand(args, stdout, stderr)
	}
	switch args[0] {
	case "run":
		return runCommand(args[1:], stdout, stderr)
	case "config":
		return configCommand(args[1:], stdout, stderr)
	case "pull":
		return pullCommand(args[1:], stdout, stderr)
	case "images", "prune":
		return imagesCommand(args[0] == "prune", args[1:], stdout, stderr)
	case "login", "logout":
		return loginCommand(args[0], args[1:], os.Stdin, stdout, stderr)
	case "status", "scale", "restart":
		return ctlCommand(args[0], args[1:], stdout, stderr)
	case "version", "--version":
		return versionCommand(stdout, stderr)
	case "help":
		return daemonCommand([]string{"--help"}, stdout, stderr)
	default:
		return fail(stderr, &config.UsageError{Err: fmt.Errorf("unknown command %q (see `mrtd --help`)", args[0])})
	}
}

// fail prints err as one line and returns the exit status it calls for.
func fail(stderr io.Writer, err error) int {
	err = addFix(err)
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	fmt.Fprintf(stderr, "mrtd: %s\n", msg)
	return exitCode(err)
}

// Exit statuses of mrtd run for its own failures, as podman run uses them.
const (
	exitUsage      = 2
	exitRunFailed  = 125
	exitCannotExec = 126
	exitNotFound   = 127
)

func exitCode(err error) int {
	var usage *config.UsageError
	var start *container.StartError
	var cmd *container.CommandError
	switch {
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &cmd) && cmd.NotFound:
		return exitNotFound
	case errors.As(err, &cmd):
		return exitCannotExec
	case errors.As(err, &start) && start.NotFound():
		return exitNotFound
	case errors.As(err, &start) && start.CannotExecute():
		return exitCannotExec
	default:
		return exitRunFailed
	}
}
