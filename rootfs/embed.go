//go:build mrtd_assets

package rootfs

import _ "embed"

// The Makefile writes these files into rootfs/embedded/ and builds bin/mrtd
// with -tags mrtd_assets. They are build outputs and never committed.

var (
	//go:embed embedded/runc
	embeddedRunc []byte
	//go:embed embedded/runc.sha256
	embeddedRuncSum string
	//go:embed embedded/runc.version
	embeddedRuncVersion string
	//go:embed embedded/rootfs.tar.zst
	embeddedRootfs []byte
	//go:embed embedded/rootfs.tar.zst.sha256
	embeddedRootfsSum string
	//go:embed embedded/init
	embeddedInit []byte
	//go:embed embedded/init.sha256
	embeddedInitSum string
	//go:embed embedded/init.version
	embeddedInitVersion string
)

// Builtin returns the assets compiled into this binary.
func Builtin() (*Embedded, error) {
	return newEmbedded(
		asset{data: embeddedRunc, sum: embeddedRuncSum, version: embeddedRuncVersion},
		asset{data: embeddedRootfs, sum: embeddedRootfsSum},
		asset{data: embeddedInit, sum: embeddedInitSum, version: embeddedInitVersion},
	)
}
