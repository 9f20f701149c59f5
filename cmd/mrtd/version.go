package main

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/mrt-project/mrt/rootfs"
)

// version is set by make: -ldflags "-X main.version=$(git describe ...)".
var version string

// mrtdVersion is mrtd's own version: what make set, else the module's
// version from the build info (a `go install` of a tagged release), else
// "devel".
func mrtdVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func versionCommand(stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "mrtd %s (%s)\n", mrtdVersion(), runtime.Version())
	emb, err := rootfs.Builtin()
	if errors.Is(err, rootfs.ErrNotEmbedded) {
		fmt.Fprintln(stdout, "assets: none (built without embedded runc, init and rootfs)")
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintf(stdout, "runc: %s (sha256 %s)\n", emb.RuncVersion, emb.RuncDigest)
	fmt.Fprintf(stdout, "init: %s (sha256 %s)\n", emb.InitVersion, emb.InitDigest)
	fmt.Fprintf(stdout, "rootfs: sha256 %s, %d bytes\n", emb.RootfsDigest, len(emb.Rootfs))
	return 0
}
