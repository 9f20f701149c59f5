package main

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/rootfs"
)

// TestRootfsError: what package rootfs cannot say, because it knows no
// flags, mrtd adds.
func TestRootfsError(t *testing.T) {
	digest := strings.Repeat("a", 64)
	other := strings.Repeat("b", 64)
	tests := []struct {
		name  string
		err   error
		want  string
		usage bool
	}{
		{"not embedded", rootfs.ErrNotEmbedded,
			"this mrtd was built without embedded runc and rootfs: build it with `make`, or pass --runc and --rootfs", false},
		{"malformed digests", rootfs.ErrMalformedDigests,
			"embedded asset digests are malformed: rebuild mrtd with `make`", false},
		{"directory without mount points", &rootfs.MountPointsError{Dir: "/srv/root", Missing: []string{"/proc", "/tmp"}},
			"--rootfs /srv/root lacks the mount points [/proc /tmp]: create them as empty directories", true},
		{"corrupt archive", &rootfs.DigestMismatchError{Name: "embedded rootfs", Expected: digest, Actual: other},
			"embedded rootfs is corrupt: sha256 bbbbbbbbbbbb, expected aaaaaaaaaaaa (rebuild mrtd with `make`, or pass another --rootfs)", false},
		{"cache dir full", &rootfs.CacheError{Dir: "/c", Op: "writing runc into", Err: unix.ENOSPC, Remedy: rootfs.FreeSpace},
			"writing runc into cache dir /c failed: no space left on device (free space on its filesystem, or pass --cache-dir on another filesystem)", false},
		{"cache dir not usable", &rootfs.CacheError{Dir: "/c", Err: unix.ENOTDIR},
			"cache dir /c is not usable: not a directory (pass --cache-dir with a writable directory)", false},
		{"another error", errors.New("open /x: no such file or directory"), "open /x: no such file or directory", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := addFix(tc.err)
			if err.Error() != tc.want {
				t.Errorf("addFix = %q, want %q", err, tc.want)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("addFix(%v) does not wrap it", tc.err)
			}
			var usage *config.UsageError
			if errors.As(err, &usage) != tc.usage {
				t.Errorf("addFix(%v) is a UsageError: %t, want %t", tc.err, !tc.usage, tc.usage)
			}
		})
	}
	for r := rootfs.WritableDir; r <= rootfs.RootOnlyDir; r++ {
		if fix := cacheDirFixes[r]; !strings.Contains(fix, "--cache-dir") {
			t.Errorf("Remedy %d is worded %q, which names no --cache-dir", r, fix)
		}
	}
}
