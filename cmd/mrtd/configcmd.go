package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/control"
)

// configCommand prints the effective settings and where each came from.
func configCommand(args []string, stdout, stderr io.Writer) int {
	st, err := config.LoadSettings(args, os.LookupEnv)
	if errors.Is(err, config.ErrHelp) {
		fmt.Fprint(stdout, "Usage: mrtd config [flags]\n\nPrint the settings mrtd would run with, and where each comes from\n(flag > MRTD_* environment > config file > default). When env or mount\nvalues are templates ({{...}}), a worker.N line per worker shows what\nthey render to. When an mrtd runs the instance, say so: these settings\nare a fresh parse, which it applies on reload or restart.\n\nFlags:\n")
		printFlags(stdout, st.Flags)
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	var b strings.Builder
	if note := runningNote(st, 3*time.Second); note != "" {
		fmt.Fprintln(&b, note)
	}
	st.Print(&b)
	fmt.Fprint(stdout, b.String())
	return 0
}

// runningNote asks the instance's control socket for its status. When an
// mrtd answers, it returns a comment line saying what that mrtd runs and
// that the printed settings are a fresh parse; "" when none runs. A daemon
// that does not answer within wait is reported as such; the request then
// ends at its own deadline, or with mrtd config.
func runningNote(st *config.Settings, wait time.Duration) string {
	path := control.SocketPath(st.Config.RuntimeDir, st.Pool.Instance)
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := (&control.Client{Path: path}).Status(ctx)
	var notRunning *control.NotRunningError
	switch {
	case errors.As(err, &notRunning):
		return "" // a socket left by an mrtd that died
	case err != nil:
		return fmt.Sprintf("# a process at %s did not answer within %v; the settings below are a fresh parse, not necessarily what a running mrtd runs", path, wait)
	case resp.Error != "":
		return fmt.Sprintf("# an mrtd runs instance %s but refused to say what it runs (%s); the settings below are a fresh parse, which it applies on reload or restart", st.Pool.Instance, resp.Error)
	}
	var live []string
	for k := range liveKeys {
		if k != "config" && k != "workers" {
			live = append(live, k)
		}
	}
	sort.Strings(live)
	return fmt.Sprintf("# the running mrtd (instance %s) runs %d workers; the settings below are a fresh parse, not what it runs: it applies them on reload (SIGHUP: %s, and workers when it changed since the last load) or restart (the rest)",
		resp.Instance, resp.Desired, strings.Join(live, ", "))
}

// liveKeys are the settings a reload applies; the others need a restart.
var liveKeys = map[string]bool{
	"workers": true, "env": true, "env-file": true, "mount": true, "network": true,
	"seccomp": true, "workdir": true, "config": true,
}
