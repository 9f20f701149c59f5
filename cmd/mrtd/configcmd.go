package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// configCommand prints the effective settings and where each came from.
func configCommand(args []string, stdout, stderr io.Writer) int {
	st, err := loadSettings(args, os.LookupEnv)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, "Usage: mrtd config [flags]\n\nPrint the settings mrtd would run with, and where each comes from\n(flag > MRTD_* environment > config file > default).\n\nFlags:\n")
		printFlags(stdout, st.fs)
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	var b strings.Builder
	st.print(&b)
	fmt.Fprint(stdout, b.String())
	return 0
}
