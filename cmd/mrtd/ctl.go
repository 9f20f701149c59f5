package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/control"
	"github.com/mrt-project/mrt/internal/userns"
)

const ctlUsage = `Usage:
  mrtd status [--json]       each worker's state, pid, uptime, restarts, last exit and health
  mrtd scale N              keep N workers: those below N are left alone
  mrtd restart WORKER       replace one worker's container

They talk to a running mrtd through its control socket,
<runtime-dir>/<instance>.sock.

Flags:
`

// ctlCommand runs status, scale or restart against a running daemon.
func ctlCommand(name string, args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Default(userns.EUID(), os.Getenv)
	if err != nil {
		return fail(stderr, err)
	}
	instance := config.DefaultPool().Instance
	jsonOut := false
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&cfg.RuntimeDir, "runtime-dir", cfg.RuntimeDir, "the running mrtd's runtime `DIR`")
	fs.StringVar(&instance, "instance", instance, "the running mrtd's instance `name`")
	if name == "status" {
		fs.BoolVar(&jsonOut, "json", false, "print JSON")
	}
	// Flags may come before or after the argument: mrtd scale 8 --instance x.
	var positional []string
	for {
		if err := config.ParseFlags(fs, args); errors.Is(err, config.ErrHelp) {
			fmt.Fprint(stdout, ctlUsage)
			printFlags(stdout, fs)
			return 0
		} else if err != nil {
			return fail(stderr, err)
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	req := control.Request{Command: name}
	want := map[string]int{"status": 0, "scale": 1, "restart": 1}[name]
	if len(positional) != want {
		return fail(stderr, &config.UsageError{Err: fmt.Errorf("mrtd %s takes %d argument(s) (see `mrtd %s --help`)", name, want, name)})
	}
	if want == 1 {
		n, err := strconv.Atoi(positional[0])
		if err != nil || n < 0 {
			return fail(stderr, &config.UsageError{Err: fmt.Errorf("mrtd %s %q: not a number", name, positional[0])})
		}
		if name == "scale" {
			req.Workers = n
		} else {
			req.Worker = &n
		}
	}
	client := &control.Client{Path: control.SocketPath(cfg.RuntimeDir, instance)}
	resp, err := client.Do(context.Background(), req)
	if err != nil {
		return failDaemon(stderr, err)
	}
	if resp.Error != "" {
		fmt.Fprintf(stderr, "mrtd: %s\n", resp.Error)
		return 1
	}
	if jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(resp)
		return 0
	}
	printStatus(stdout, resp)
	return 0
}

func printStatus(w io.Writer, resp *control.Response) {
	fmt.Fprintf(w, "instance %s: %d workers desired\n", resp.Instance, resp.Desired)
	if len(resp.Labels) > 0 {
		keys := make([]string, 0, len(resp.Labels))
		for k := range resp.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "label %s=%s\n", k, resp.Labels[k])
		}
	}
	health := false  // a health check: its columns
	standby := false // a standby somewhere (--standby): its column
	for _, st := range resp.Workers {
		health = health || st.Health != nil
		standby = standby || st.Standby
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "WORKER\tCONTAINER\tSTATE\tPID\tUPTIME\tRESTARTS\tLAST EXIT")
	if standby {
		fmt.Fprint(tw, "\tSTANDBY")
	}
	if health {
		fmt.Fprint(tw, "\tHEALTH\tLAST CHECK")
	}
	fmt.Fprintln(tw)
	for _, st := range resp.Workers {
		pid, uptime := "-", "-"
		if st.Pid > 0 {
			pid = strconv.Itoa(st.Pid)
		}
		if st.State == "running" {
			uptime = time.Since(st.Since).Round(time.Second).String()
		}
		last := st.LastExit
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s", st.Worker, st.ContainerID, st.State, pid, uptime, st.Restarts, last)
		if standby {
			sb := "-"
			if st.Standby {
				sb = "ready"
			}
			fmt.Fprintf(tw, "\t%s", sb)
		}
		if health {
			h, check := healthColumns(st.Health, time.Now())
			fmt.Fprintf(tw, "\t%s\t%s", h, check)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// maxCheckOutput is how much of a check's output the status table shows.
const maxCheckOutput = 60

// healthColumns are a worker's HEALTH and LAST CHECK in the status table:
// its health and failing streak; how long ago the last check ended, its
// exit code and the start of its output, on one line.
func healthColumns(h *control.WorkerHealth, now time.Time) (health, check string) {
	if h == nil {
		return "-", "-"
	}
	health = h.Status
	if h.FailingStreak > 0 {
		health += fmt.Sprintf(" (%d failed)", h.FailingStreak)
	}
	if h.LastCheck.IsZero() {
		return health, "-"
	}
	check = fmt.Sprintf("%s ago: exit %d", now.Sub(h.LastCheck).Round(time.Second), h.LastExitCode)
	if h.LastExitCode < 0 {
		check = fmt.Sprintf("%s ago: failed", now.Sub(h.LastCheck).Round(time.Second))
	}
	out := strings.Join(strings.Fields(h.LastOutput), " ")
	if r := []rune(out); len(r) > maxCheckOutput {
		out = string(r[:maxCheckOutput-1]) + "…"
	}
	if out != "" {
		check += ": " + out
	}
	return health, check
}
