package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Source is where a worker's root filesystem comes from. There are three:
// the rootfs embedded in mrtd (*Embedded), a directory used in place (Dir)
// and an archive file extracted into the cache (ArchiveFile). A fourth, an
// image pulled from a registry, fetches its layers and extracts them into
// the cache under its digest, as an archive is.
type Source interface {
	// Open returns the tree, unpacked into c first when it must be, and
	// held in use until the Ref is closed. Ref.Digest says what the tree
	// was made from.
	Open(c *Cache) (*Ref, error)
	// String names the source in messages and logs.
	String() string
}

// Dir is a root filesystem directory, used in place and never modified: it
// must have the MountPoints already, as mrtd creates them only in trees it
// extracted.
type Dir string

// Open checks the directory's mount points and returns it by its absolute
// path, with no Digest: it is not in the cache.
func (d Dir) Open(*Cache) (*Ref, error) {
	abs, err := filepath.Abs(string(d))
	if err != nil {
		return nil, err
	}
	if err := checkMountPoints(abs); err != nil {
		return nil, err
	}
	return &Ref{Path: abs}, nil
}

func (d Dir) String() string { return string(d) }

// ArchiveFile is a .tar or .tar.zst file, extracted into the cache under its
// sha256. The cache remembers that sha256 by the file's stat (device,
// inode, size, mtime, ctime), so that a warm start neither reads nor
// hashes the archive: see archive_memo.go.
type ArchiveFile string

// Open finds the archive's digest, in its memo or by hashing it, and
// extracts it into c, unless a tree with that digest is there already. An
// extraction verifies the archive against the digest; when a memo's
// digest was wrong (the file changed and its stat did not), Open forgets
// the memo, hashes the archive and extracts it once more.
func (f ArchiveFile) Open(c *Cache) (*Ref, error) {
	a, memo, err := c.fileArchive(string(f))
	if err != nil {
		return nil, err
	}
	ref, err := c.Rootfs(a)
	var mismatch *DigestMismatchError
	if !memo || !errors.As(err, &mismatch) {
		return ref, err
	}
	c.Log.Info("archive changed since its digest was remembered, hashing it again", "archive", a.Name, "remembered", short(a.Digest), "actual", short(mismatch.Actual))
	abs, err := filepath.Abs(string(f))
	if err != nil {
		return nil, err
	}
	c.forgetMemo(abs)
	if a, _, err = c.fileArchive(string(f)); err != nil {
		return nil, err
	}
	return c.Rootfs(a)
}

func (f ArchiveFile) String() string { return string(f) }

// MountPointsError reports a rootfs directory that lacks some of the
// MountPoints.
type MountPointsError struct {
	Dir string
	// Missing are the absolute paths inside Dir ("/proc").
	Missing []string
}

func (e *MountPointsError) Error() string {
	return fmt.Sprintf("%s lacks the mount points %v: create them as empty directories", e.Dir, e.Missing)
}

// checkMountPoints reports the mount points a rootfs directory lacks.
func checkMountPoints(dir string) error {
	var missing []string
	for _, mp := range MountPoints {
		if fi, err := os.Stat(filepath.Join(dir, mp)); err != nil || !fi.IsDir() {
			missing = append(missing, "/"+mp)
		}
	}
	if len(missing) > 0 {
		return &MountPointsError{Dir: dir, Missing: missing}
	}
	return nil
}
