package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/mrt-project/mrt/config"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// errHelp is returned when --help was asked for; usage has been printed.
var errHelp = errors.New("help requested")

// parseFlags parses args with fs, turning the flag package's errors into
// one-line *config.UsageError values that name the fix.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	if err != nil {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			msg = fmt.Sprintf("unknown flag --%s", strings.TrimPrefix(name, "-"))
		}
		help := "mrtd --help"
		if fs.Name() != "mrtd" {
			help = "mrtd " + fs.Name() + " --help"
		}
		return &config.UsageError{Err: fmt.Errorf("%s (see `%s`)", msg, help)}
	}
	return nil
}

// printFlags writes fs's flags as --name lines, as users of systemd and
// podman expect them.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "[]" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
