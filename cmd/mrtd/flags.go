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
func parseFlags(fs *flag.FlagSet, args []string, usage func(io.Writer)) error {
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
		return &config.UsageError{Err: fmt.Errorf("%s (see `mrtd %s --help`)", msg, fs.Name())}
	}
	return nil
}
