// Package e2e holds the black-box tests of mrtd: each runs the mrtd binary
// (built from ./cmd/mrtd, or the real bin/mrtd) from outside, as a user
// would, on the harness of internal/mrtdtest. `make test` runs them with
// MRTD_INTEGRATION=1; plain `go test` without MRTD_RUNC skips them, saying
// why.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// testEnv is shared by the tests; nil when they cannot run.
var testEnv *mrtdtest.Env

func TestMain(m *testing.M) {
	var err error
	testEnv, err = mrtdtest.Setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		os.Exit(1)
	}
	code := m.Run()
	testEnv.Close()
	os.Exit(code)
}

// needIntegration skips t when the integration environment was not set up:
// only when the tests were run with plain `go test` and no runc was built.
func needIntegration(t *testing.T) *mrtdtest.Env {
	t.Helper()
	return mrtdtest.Need(t, testEnv)
}
