package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/mrt-project/mrt/assets"
)

func versionCommand(stdout, stderr io.Writer) int {
	fmt.Fprintln(stdout, "mrtd")
	emb, err := assets.Builtin()
	if errors.Is(err, assets.ErrNotEmbedded) {
		fmt.Fprintln(stdout, "assets: none (built without embedded runc and rootfs)")
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintf(stdout, "runc: %s (sha256 %s)\n", emb.RuncVersion, emb.RuncDigest)
	fmt.Fprintf(stdout, "rootfs: sha256 %s, %d bytes\n", emb.RootfsDigest, len(emb.Rootfs))
	return 0
}
