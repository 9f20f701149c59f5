package main

import (
	"errors"
	"fmt"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/daemon"
	"github.com/mrt-project/mrt/rootfs"
)

// cacheDirFixes say what to do about a rootfs.CacheError, in mrtd's flags.
var cacheDirFixes = map[rootfs.Remedy]string{
	rootfs.WritableDir:     "pass --cache-dir with a writable directory",
	rootfs.FreeSpace:       "free space on its filesystem, or pass --cache-dir on another filesystem",
	rootfs.RaiseQuota:      "free space or raise the disk quota, or pass --cache-dir on another filesystem",
	rootfs.CheckFilesystem: "check its filesystem (the kernel log may say more), or pass --cache-dir on another filesystem",
	rootfs.FillOnce:        "fill it once with an mrtd that may write there, or pass --cache-dir with a writable directory",
	rootfs.RootOnlyDir:     "pass a --cache-dir owned by root, in directories only root can write, such as /var/cache/mrtd",
}

// addFix adds to an error of package rootfs (or daemon) what to do
// about it, in mrtd's flags and build: the packages know neither.
func addFix(err error) error {
	var ml *daemon.MetricsListenError
	if errors.As(err, &ml) {
		return fmt.Errorf("--metrics-addr: %w", ml.Err)
	}
	var mp *rootfs.MountPointsError
	var dm *rootfs.DigestMismatchError
	var ce *rootfs.CacheError
	switch {
	case errors.Is(err, rootfs.ErrNotEmbedded):
		return fmt.Errorf("%w: build it with `make`, or pass --runc and --rootfs", err)
	case errors.Is(err, rootfs.ErrMalformedDigests):
		return fmt.Errorf("%w: rebuild mrtd with `make`", err)
	case errors.As(err, &mp):
		return &config.UsageError{Err: fmt.Errorf("--rootfs %w", err)}
	case errors.As(err, &dm):
		return fmt.Errorf("%w (rebuild mrtd with `make`, or pass another --rootfs)", err)
	case errors.As(err, &ce):
		return fmt.Errorf("%w (%s)", err, cacheDirFixes[ce.Remedy])
	}
	return err
}
