package e2e

import (
	"strings"
	"testing"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// TestImageUser: --user 0 runs as container root, as the image's USER does
// by default; another --user is a one-line usage error that says what the
// host lacks (uidmap and a subordinate range for the user mrtd runs as,
// which uid 65534 has not) or that this mrtd cannot do it yet.
func TestImageUser(t *testing.T) {
	e := needIntegration(t)
	mrtdtest.NeedRegistry(t)
	img := e.BuildImage(t, e.UserDir(t, "layout"), "1")
	d := e.NewDirs(t)
	wantOutput(t, imageRun(t, e, d, img.Ref(), []string{"--user", "0"}, "id"), "0 0\n")
	r := imageRun(t, e, d, img.Ref(), []string{"--user", mrtdtest.ImageUser}, "id")
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	last := lines[len(lines)-1]
	if r.Code != 2 || !strings.HasPrefix(last, "mrtd: --user "+mrtdtest.ImageUser) ||
		!(strings.Contains(last, "uidmap") || strings.Contains(last, "not supported by this mrtd yet")) {
		t.Fatalf("--user %s: status %d, last line %q; want 2 and a usage error naming uidmap", mrtdtest.ImageUser, r.Code, last)
	}
	mrtdtest.AssertClean(t, d)
}
