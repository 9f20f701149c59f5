package rootfs

import (
	"io/fs"
	"os"
	"path/filepath"
)

// RemoveTree removes p, making its directories writable first if need be:
// extracted trees have read-only directories.
func RemoveTree(p string) error {
	if err := os.RemoveAll(p); err == nil {
		return nil
	}
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}
