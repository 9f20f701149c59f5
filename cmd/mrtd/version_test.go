package main

import (
	"strings"
	"testing"
)

// TestVersion: mrtd version names mrtd's own version first ("devel" in a
// plain go build). e2e's TestVersion checks that bin/mrtd, built by make,
// carries the checkout's.
func TestVersion(t *testing.T) {
	var out, errOut strings.Builder
	if code := versionCommand(&out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "mrtd devel (go") {
		t.Fatalf("status %d output %q, want mrtd devel (go...)", code, out.String())
	}
}
