//go:build !mrtd_assets

package rootfs

// Builtin returns the assets compiled into this binary. This binary was built
// without them (go build without -tags mrtd_assets).
func Builtin() (*Embedded, error) {
	return nil, ErrNotEmbedded
}
