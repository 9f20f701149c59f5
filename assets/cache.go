package assets

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
)

// Archive is a rootfs archive (tar or tar.zst) with its known sha256.
type Archive struct {
	// Name says where the archive comes from, for messages.
	Name string
	// Digest is the hex sha256 of the archive bytes. Extraction fails if the
	// bytes read do not hash to it.
	Digest string
	// Size is the archive's length in bytes, for progress reports.
	Size int64
	// Open returns the archive bytes from the start.
	Open func() (io.ReadCloser, error)
}

// FileArchive hashes the archive at path and returns it as an Archive.
func FileArchive(path string) (*Archive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return &Archive{
		Name:   path,
		Digest: hex.EncodeToString(h.Sum(nil)),
		Size:   n,
		Open:   func() (io.ReadCloser, error) { return os.Open(path) },
	}, nil
}

// Cache is the directory runc and rootfs trees are unpacked into.
//
//	<Dir>/lock                   serializes writers
//	<Dir>/runc-<sha256>          runc binaries, written once
//	<Dir>/runc-<sha256>.lock     held shared by every process using it
//	<Dir>/rootfs/<key>/          extracted trees, complete once they exist
//	<Dir>/rootfs/<key>.lock      held shared by every process using it
//	<Dir>/rootfs/.tmp-*          extractions under way, or left by a crash
//
// key is the archive's sha256, followed by -<uid>.<gid> when Owner is set.
type Cache struct {
	Dir string
	// Owner, when set, owns every extracted entry. mrtd sets it when it runs
	// as root, to the unprivileged host uid that container root maps to.
	Owner *Owner
	// DropSetID clears setuid and setgid bits while extracting.
	DropSetID bool
	Log       logr.Logger
}

// Ref is an entry of the cache in use. The entry is not removed while Ref is
// open, by this process or any other.
type Ref struct {
	// Path is the runc binary or the rootfs directory.
	Path string
	// Extracted is true when this call created the entry.
	Extracted bool
	lock      *fileLock
}

// Close releases the entry.
func (r *Ref) Close() error {
	if r != nil {
		r.lock.Unlock()
	}
	return nil
}

// CacheError reports a cache directory that cannot be used.
type CacheError struct {
	Dir string
	Err error
}

func (e *CacheError) Error() string {
	return fmt.Sprintf("cache dir %s is not usable: %v (pass --cache-dir with a writable directory)", e.Dir, e.Err)
}

func (e *CacheError) Unwrap() error { return e.Err }

func (c *Cache) init() error {
	// Private to this user; when Owner is set (mrtd runs as root), that
	// uid must still traverse into its rootfs, but need not list anything.
	mode := os.FileMode(0o700)
	if c.Owner != nil {
		mode = 0o711
	}
	for _, d := range []string{c.Dir, filepath.Join(c.Dir, "rootfs")} {
		if err := os.Mkdir(d, mode); err != nil && !errors.Is(err, fs.ErrExist) {
			if err := os.MkdirAll(d, mode); err != nil {
				return &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
			}
		}
		if c.Owner != nil {
			if err := os.Chmod(d, mode); err != nil {
				return &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
			}
		}
	}
	if err := unix.Access(c.Dir, unix.W_OK|unix.X_OK); err != nil {
		return &CacheError{Dir: c.Dir, Err: err}
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// writeLock takes the cache-wide lock that every writer holds.
func (c *Cache) writeLock() (*fileLock, error) {
	l, err := lockFile(filepath.Join(c.Dir, "lock"), unix.LOCK_EX)
	if err != nil {
		return nil, &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
	}
	return l, nil
}

// Runc makes sure the runc binary with the given content and digest is in the
// cache and returns it in use. An existing binary is never rewritten: it may
// be executing.
func (c *Cache) Runc(data []byte, digest string) (*Ref, error) {
	if err := c.init(); err != nil {
		return nil, err
	}
	p := filepath.Join(c.Dir, "runc-"+digest)
	ref, err := lockFile(p+".lock", unix.LOCK_SH)
	if err != nil {
		return nil, &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
	}
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(data)) {
		return &Ref{Path: p, lock: ref}, nil
	}
	wl, err := c.writeLock()
	if err != nil {
		ref.Unlock()
		return nil, err
	}
	defer wl.Unlock()
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(data)) {
		return &Ref{Path: p, lock: ref}, nil
	}
	if err := writeRunc(p, data, digest); err != nil {
		ref.Unlock()
		// As in Rootfs: leave no lock file for a binary that does not
		// exist, unless another process is waiting on it.
		if l, lerr := lockFile(p+".lock", unix.LOCK_EX|unix.LOCK_NB); lerr == nil {
			os.Remove(p + ".lock")
			l.Unlock()
		}
		return nil, err
	}
	return &Ref{Path: p, Extracted: true, lock: ref}, nil
}

func writeRunc(p string, data []byte, digest string) error {
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != digest {
		return &DigestMismatchError{Name: "embedded runc", Expected: digest, Actual: got}
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-runc-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	_, err = io.Copy(f, bytes.NewReader(data))
	if err == nil {
		err = f.Chmod(0o700)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("writing runc into the cache: %w", err)
	}
	return nil
}

// Key returns the cache key an archive with this digest is extracted under.
func (c *Cache) Key(digest string) string {
	if c.Owner != nil {
		return fmt.Sprintf("%s-%d.%d", digest, c.Owner.UID, c.Owner.GID)
	}
	return digest
}

// Rootfs makes sure the archive is extracted in the cache and returns the
// tree in use. When the tree exists this costs a lock and a stat; otherwise
// the archive is extracted into a temporary sibling, verified against its
// digest and renamed into place, all under the cache's write lock, so that
// processes starting together extract it once.
func (c *Cache) Rootfs(a *Archive) (*Ref, error) {
	if err := c.init(); err != nil {
		return nil, err
	}
	key := c.Key(a.Digest)
	final := filepath.Join(c.Dir, "rootfs", key)
	ref, err := lockFile(final+".lock", unix.LOCK_SH)
	if err != nil {
		return nil, &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
	}
	if fi, err := os.Stat(final); err == nil && fi.IsDir() {
		return &Ref{Path: final, lock: ref}, nil
	}
	wl, err := c.writeLock()
	if err != nil {
		ref.Unlock()
		return nil, err
	}
	defer wl.Unlock()
	if fi, err := os.Stat(final); err == nil && fi.IsDir() {
		return &Ref{Path: final, lock: ref}, nil
	}
	// Holding the write lock, no extraction is under way: temporary
	// directories are what a killed process left behind.
	c.removeTemps()
	if err := c.extractInto(a, final); err != nil {
		ref.Unlock()
		// Leave no lock file for an entry that does not exist, unless
		// another process is waiting on it.
		if l, lerr := lockFile(final+".lock", unix.LOCK_EX|unix.LOCK_NB); lerr == nil {
			os.Remove(final + ".lock")
			l.Unlock()
		}
		return nil, err
	}
	return &Ref{Path: final, Extracted: true, lock: ref}, nil
}

func (c *Cache) extractInto(a *Archive, final string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(final), ".tmp-"+short(a.Digest)+"-")
	if err != nil {
		return &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
	}
	ok := false
	defer func() {
		if !ok {
			removeTree(tmp)
		}
	}()
	rc, err := a.Open()
	if err != nil {
		return err
	}
	defer rc.Close()

	start := time.Now()
	h := sha256.New()
	stats, err := extract(io.TeeReader(rc, h), tmp, extractOptions{
		Owner:     c.Owner,
		DropSetID: c.DropSetID,
		Progress: func(done int64) {
			c.Log.Info("extracting rootfs", "archive", a.Name, "bytesDone", done, "bytesTotal", a.Size)
		},
	})
	if err != nil {
		if errors.Is(err, ErrNotArchive) {
			return fmt.Errorf("%s: %w (pass a .tar or .tar.zst file, or a directory)", a.Name, err)
		}
		var unsafe *UnsafeEntryError
		if errors.As(err, &unsafe) {
			return fmt.Errorf("%s: %w", a.Name, err)
		}
		return fmt.Errorf("extracting %s: %w (the archive is truncated or corrupt)", a.Name, err)
	}
	// Hash what the tar reader did not need (trailing padding).
	if _, err := io.Copy(h, rc); err != nil {
		return fmt.Errorf("reading %s: %w", a.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.Digest {
		return &DigestMismatchError{Name: a.Name, Expected: a.Digest, Actual: got}
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	ok = true
	c.Log.Info("rootfs extracted", "archive", a.Name, "digest", short(a.Digest),
		"files", stats.Files, "bytes", stats.Bytes, "skipped", stats.Skipped,
		"duration", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// removeTemps removes temporary directories and files left by processes
// killed while writing. The caller holds the write lock.
func (c *Cache) removeTemps() {
	for _, dir := range []string{c.Dir, filepath.Join(c.Dir, "rootfs")} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				p := filepath.Join(dir, e.Name())
				c.Log.Info("removing leftover from an interrupted extraction", "path", p)
				removeTree(p)
			}
		}
	}
}

// Prune removes the runc binaries and rootfs trees that no process uses,
// keeping those named in keep (paths returned in Refs).
func (c *Cache) Prune(keep ...string) error {
	wl, err := c.writeLock()
	if err != nil {
		return err
	}
	defer wl.Unlock()
	c.removeTemps()
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	var candidates []string
	if ents, err := os.ReadDir(c.Dir); err == nil {
		for _, e := range ents {
			if n := e.Name(); strings.HasPrefix(n, "runc-") && !strings.HasSuffix(n, ".lock") {
				candidates = append(candidates, filepath.Join(c.Dir, n))
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join(c.Dir, "rootfs")); err == nil {
		for _, e := range ents {
			if n := e.Name(); !strings.HasPrefix(n, ".") && !strings.HasSuffix(n, ".lock") {
				candidates = append(candidates, filepath.Join(c.Dir, "rootfs", n))
			}
		}
	}
	// Lock files whose entry is gone: left by an extraction that failed or
	// was killed and never retried.
	for _, dir := range []string{c.Dir, filepath.Join(c.Dir, "rootfs")} {
		locks, _ := filepath.Glob(filepath.Join(dir, "*.lock"))
		for _, lp := range locks {
			p := strings.TrimSuffix(lp, ".lock")
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) || kept[p] {
				continue
			}
			if l, err := lockFile(lp, unix.LOCK_EX|unix.LOCK_NB); err == nil {
				os.Remove(lp)
				l.Unlock()
			}
		}
	}
	for _, p := range candidates {
		if kept[p] {
			continue
		}
		l, err := lockFile(p+".lock", unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			continue // in use, or not ours to decide
		}
		// Rename first: a tree half removed must never look complete.
		trash := filepath.Join(filepath.Dir(p), ".tmp-gc-"+filepath.Base(p))
		if err := os.Rename(p, trash); err == nil {
			removeTree(trash)
			c.Log.Info("removed unused cache entry", "path", p)
		}
		os.Remove(p + ".lock")
		l.Unlock()
	}
	return nil
}

// removeTree removes p, making read-only directories writable first.
func removeTree(p string) error {
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
