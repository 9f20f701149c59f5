package rootfs

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
	"syscall"
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
	digest, n, err := hashFile(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return &Archive{
		Name:   path,
		Digest: digest,
		Size:   n,
		Open:   func() (io.ReadCloser, error) { return os.Open(path) },
	}, nil
}

// Cache is the directory runc, the init and rootfs trees are unpacked into.
//
//	<Dir>/lock                   serializes writers
//	<Dir>/runc-<sha256>          runc binaries, written once
//	<Dir>/runc-<sha256>.lock     held shared by every process using it
//	<Dir>/init-<sha256>          the init of --init, written once, mode 0755
//	<Dir>/init-<sha256>.lock     held shared by every process using it
//	<Dir>/rootfs/<key>/          extracted trees, complete once they exist
//	<Dir>/rootfs/<key>.lock      held shared by every process using it
//	<Dir>/rootfs/<key>+<map>/    trees extracted through an IDMap, Key <map>
//	<Dir>/rootfs/.tmp-*          extractions under way, or left by a crash
//	<Dir>/archives/<sha256>      an archive file's digest by its stat, keyed
//	                             by its path's sha256 (see ArchiveFile)
//
// key is the archive's sha256 (image-<hex> for an image's tree). (Entries
// named <sha256>-<uid>.<gid>, which root's caches held before their trees
// were root-owned, are unused and pruned like any other.)
//
// A tree made through an IDMap is owned by ids of a user namespace: a
// process outside it cannot remove it, nor know it removed all of it, so
// only a process with MappedTrees set (or an IDMap) prunes such trees.
//
// A cache this process cannot write into (a read-only mount, or another
// user's directory) still serves the entries it holds: a warm start needs
// no write. It takes no lock it cannot take, and is never pruned.
type Cache struct {
	Dir string
	// RootOwned is set when mrtd runs as root. Every extracted entry is
	// then owned by 0:0 with no group or other write bit, and the cache dir
	// and every directory above it must be changeable by root alone, so
	// that no other host uid, not even the unprivileged one container root
	// maps to, can change what root's containers execute. That uid reaches
	// its tree through the other-execute bits of the cache's directories
	// (mode 0711) and reads it through the tree's other bits.
	RootOwned bool
	// DropSetID clears setuid and setgid bits while extracting.
	DropSetID bool
	// IDMap, when set, makes Rootfs and Image extract through it: every
	// entry is owned by what its archive's owner maps to, and the tree
	// is an entry of its own, whose name ends in "+" and the map's Key
	// (RootfsPath and ImagePath name it so). An archive id it does not
	// map is an *UnmappedIDError. It excludes RootOwned.
	IDMap *IDMap
	// MappedTrees says that this process may change trees extracted
	// through an IDMap, because it runs in the user namespace that maps
	// their owners: Prune removes them only then, or when IDMap is set.
	MappedTrees bool
	// KeepImageTrees leaves images' trees to mrtd prune, which removes
	// them with their blobs: a start prunes only runc and archives' trees,
	// so that alternating images does not flatten each again every time.
	KeepImageTrees bool
	Log            logr.Logger
}

// Ref is an entry of the cache in use. The entry is not removed while Ref is
// open, by this process or any other.
type Ref struct {
	// Path is the runc binary or the rootfs directory.
	Path string
	// Digest is the sha256 of what the entry was made from (the runc
	// binary, the archive), or empty for a directory used in place.
	Digest string
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

// CacheError reports a cache directory that cannot be used, or a write into
// it that failed.
type CacheError struct {
	Dir string
	// Op, when set, is what failed ("extracting embedded rootfs into");
	// when empty, the directory as a whole is not usable.
	Op  string
	Err error
	// Remedy says what would help. Error does not print it: how the user
	// chooses another cache dir is the caller's to say.
	Remedy Remedy
}

func (e *CacheError) Error() string {
	if e.Op != "" {
		return fmt.Sprintf("%s cache dir %s failed: %v", e.Op, e.Dir, e.Err)
	}
	return fmt.Sprintf("cache dir %s is not usable: %v", e.Dir, e.Err)
}

func (e *CacheError) Unwrap() error { return e.Err }

// Remedy is what would make a cache dir usable, for the caller to word in
// its own terms (the flag or setting that chooses the cache dir).
type Remedy int

const (
	// WritableDir: use another cache dir, one this process can write
	// into. The zero Remedy.
	WritableDir Remedy = iota
	// FreeSpace: free space on the cache's filesystem, or use a cache dir
	// on another filesystem.
	FreeSpace
	// RaiseQuota: free space or raise the disk quota, or use a cache dir
	// on another filesystem.
	RaiseQuota
	// CheckFilesystem: a write failed for no reason of space or
	// permission; check the filesystem (the kernel log may say more), or
	// use a cache dir on another filesystem.
	CheckFilesystem
	// FillOnce: a cache this process cannot write into lacks an entry;
	// fill it once with a process that may write there, or use a writable
	// cache dir.
	FillOnce
	// RootOnlyDir: as root, use a cache dir owned by root, in directories
	// only root can write (such as /var/cache/mrtd).
	RootOnlyDir
)

// writeError reports err, met while op wrote into the cache, with what to do
// about it: the archive is not at fault.
func (c *Cache) writeError(op string, err error) error {
	remedy := WritableDir
	switch {
	case errors.Is(err, unix.ENOSPC):
		remedy = FreeSpace
	case errors.Is(err, unix.EDQUOT):
		remedy = RaiseQuota
	case errors.Is(err, unix.EROFS), errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
	default:
		remedy = CheckFilesystem
	}
	return &CacheError{Dir: c.Dir, Op: op, Err: err, Remedy: remedy}
}

// readOnlyError reports an entry missing from a cache this process cannot
// write into; why is the reason it cannot.
func (c *Cache) readOnlyError(entry string, why error) error {
	return &CacheError{
		Dir:    c.Dir,
		Err:    fmt.Errorf("it does not hold %s yet and cannot be written: %w", entry, why),
		Remedy: FillOnce,
	}
}

// init makes sure the cache dir exists, with rootfs/ in it when it is
// writable. It returns nil, or why this process cannot write into the cache;
// such a cache still serves the entries it holds.
func (c *Cache) init() (readOnly error, err error) {
	// Private to this user; when RootOwned, the uid container root maps to
	// must still traverse into its rootfs, but need not list anything.
	mode := os.FileMode(0o700)
	if c.RootOwned {
		mode = 0o711
	}
	fi, err := os.Stat(c.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(c.Dir, mode); err != nil {
			return nil, &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
		}
		fi, err = os.Stat(c.Dir)
	}
	if err != nil {
		return nil, &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
	}
	if !fi.IsDir() {
		return nil, &CacheError{Dir: c.Dir, Err: unix.ENOTDIR}
	}
	if err := unix.Access(c.Dir, unix.X_OK); err != nil {
		return nil, &CacheError{Dir: c.Dir, Err: err}
	}
	rootfs := filepath.Join(c.Dir, "rootfs")
	if readOnly, err = writable(c.Dir); err != nil {
		return nil, &CacheError{Dir: c.Dir, Err: err}
	}
	if readOnly == nil {
		if err := os.Mkdir(rootfs, mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
		}
		if readOnly, err = writable(rootfs); err != nil {
			return nil, &CacheError{Dir: c.Dir, Err: err}
		}
	}
	if c.RootOwned {
		if readOnly == nil {
			// The uid container root maps to must traverse both. Never
			// more than that: write bits are refused below.
			for _, d := range []string{c.Dir, rootfs} {
				if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o011 != 0o011 {
					if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
						return nil, &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
					}
				}
			}
		}
		if err := c.checkRootOnly(); err != nil {
			return nil, err
		}
	}
	return readOnly, nil
}

// writable returns nil when this process may create entries in dir, the
// reason it may not (permissions, a read-only mount) as readOnly, or any
// other failure as err.
func writable(dir string) (readOnly, err error) {
	err = unix.Access(dir, unix.W_OK|unix.X_OK)
	switch {
	case err == nil:
		return nil, nil
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EROFS), errors.Is(err, unix.EPERM):
		return err, nil
	default:
		return nil, err
	}
}

// checkRootOnly reports an error unless the cache dir, its rootfs/ and every
// directory above them can be changed by root alone: owned by root and not
// writable by group or others. A sticky directory above the cache (/tmp) is
// fine: others cannot move or replace what root owns in it. Symlinks on the
// way must be root's too, and the directories they lead to are checked.
func (c *Cache) checkRootOnly() error {
	abs, err := filepath.Abs(c.Dir)
	if err != nil {
		return &CacheError{Dir: c.Dir, Err: err}
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
	}
	check := func(p string, strict bool) error {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) && !strict {
				return nil
			}
			return &CacheError{Dir: c.Dir, Err: fmt.Errorf("%s: %w", p, err)}
		}
		why := ""
		switch {
		case st.Uid != 0:
			why = fmt.Sprintf("%s is owned by uid %d", p, st.Uid)
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		case st.Mode&0o022 != 0 && (strict || st.Mode&unix.S_ISVTX == 0):
			why = fmt.Sprintf("%s is mode %04o, writable by others than root", p, st.Mode&0o7777)
		}
		if why != "" {
			return &CacheError{
				Dir:    c.Dir,
				Err:    fmt.Errorf("as root, mrtd keeps runc and the rootfs only where no other user can change them, but %s", why),
				Remedy: RootOnlyDir,
			}
		}
		return nil
	}
	if err := check(filepath.Join(real, "rootfs"), false); err != nil {
		return err
	}
	for _, start := range []string{abs, real} {
		for p, strict := start, true; ; p, strict = filepath.Dir(p), false {
			if err := check(p, strict); err != nil {
				return err
			}
			if p == "/" {
				break
			}
		}
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

// useLock takes the shared lock that keeps an entry from being pruned while
// this process uses it. In a cache it cannot write into (readOnly is why), it
// opens an existing lock file read-only, and goes without the lock when it
// cannot: only a process that can write into a cache prunes it.
func (c *Cache) useLock(path string, readOnly error) (*fileLock, error) {
	if readOnly != nil {
		l, err := lockFileReadOnly(path, unix.LOCK_SH)
		if err != nil {
			return nil, nil
		}
		return l, nil
	}
	l, err := lockFile(path, unix.LOCK_SH)
	if err != nil {
		return nil, &CacheError{Dir: c.Dir, Err: unwrapPath(err)}
	}
	return l, nil
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
	// Only mrtd runs it, as the cache's owner.
	return c.binary("runc", data, digest, 0o700)
}

// Init makes sure the init binary (what --init runs as a container's pid
// 1) with the given content and digest is in the cache, as init-<sha256>,
// and returns it in use. It is mode 0755: the containers run it as their
// own users, which as root are not the cache's owner. Like runc, it is
// never rewritten.
func (c *Cache) Init(data []byte, digest string) (*Ref, error) {
	return c.binary("init", data, digest, 0o755)
}

// binary makes sure the executable name-<digest> with the content data is
// in the cache, with mode, and returns it in use.
func (c *Cache) binary(name string, data []byte, digest string, mode os.FileMode) (*Ref, error) {
	readOnly, err := c.init()
	if err != nil {
		return nil, err
	}
	p := c.binaryPath(name, digest)
	ref, err := c.useLock(p+".lock", readOnly)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(data)) {
		return &Ref{Path: p, Digest: digest, lock: ref}, nil
	}
	if readOnly != nil {
		ref.Unlock()
		return nil, c.readOnlyError(name+"-"+short(digest), readOnly)
	}
	wl, err := c.writeLock()
	if err != nil {
		ref.Unlock()
		return nil, err
	}
	defer wl.Unlock()
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(data)) {
		return &Ref{Path: p, Digest: digest, lock: ref}, nil
	}
	if err := c.writeBinary(name, p, data, digest, mode); err != nil {
		ref.Unlock()
		// As in Rootfs: leave no lock file for a binary that does not
		// exist, unless another process is waiting on it.
		if l, lerr := lockFile(p+".lock", unix.LOCK_EX|unix.LOCK_NB); lerr == nil {
			os.Remove(p + ".lock")
			l.Unlock()
		}
		return nil, err
	}
	return &Ref{Path: p, Digest: digest, Extracted: true, lock: ref}, nil
}

func (c *Cache) writeBinary(name, p string, data []byte, digest string, mode os.FileMode) error {
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != digest {
		return &DigestMismatchError{Name: "embedded " + name, Expected: digest, Actual: got}
	}
	op := "writing " + name + " into"
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+name+"-")
	if err != nil {
		return c.writeError(op, unwrapPath(err))
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	_, err = io.Copy(f, bytes.NewReader(data))
	if err == nil {
		err = f.Chmod(mode)
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
	if err == nil {
		// The rename itself must survive a power loss before anything
		// relies on the binary.
		if err = syncDir(filepath.Dir(p)); err != nil {
			os.Remove(p)
		}
	}
	if err != nil {
		return c.writeError(op, unwrapPath(err))
	}
	return nil
}

// syncFS flushes the filesystem that holds dir; syncDir flushes dir's own
// entries. Tests replace them to see when they are called.
var (
	syncFS = func(dir string) error {
		f, err := os.Open(dir)
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Syncfs(int(f.Fd()))
	}
	syncDir = func(dir string) error {
		f, err := os.Open(dir)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	}
)

// RuncPath is where the runc binary with this digest is, or would be, in
// the cache: for Prune's keep list.
func (c *Cache) RuncPath(digest string) string {
	return c.binaryPath("runc", digest)
}

// InitPath is where the init binary with this digest is, or would be, in
// the cache: for Prune's keep list.
func (c *Cache) InitPath(digest string) string {
	return c.binaryPath("init", digest)
}

func (c *Cache) binaryPath(name, digest string) string {
	return filepath.Join(c.Dir, name+"-"+digest)
}

// isBinary reports whether n, a name in the cache dir, is a binary's entry
// (runc-<sha256>, init-<sha256>), not its lock.
func isBinary(n string) bool {
	return (strings.HasPrefix(n, "runc-") || strings.HasPrefix(n, "init-")) && !strings.HasSuffix(n, ".lock")
}

// RootfsPath is where the tree extracted from an archive with this digest
// is, or would be, in the cache: for Prune's keep list.
func (c *Cache) RootfsPath(digest string) string {
	return filepath.Join(c.Dir, "rootfs", key(digest)+c.mapSuffix())
}

// key returns the cache key an archive with this digest is extracted under:
// the digest itself.
func key(digest string) string {
	return digest
}

// Rootfs makes sure the archive is extracted in the cache and returns the
// tree in use. When the tree exists this costs a lock and a stat; otherwise
// the archive is extracted into a temporary sibling, verified against its
// digest and renamed into place, all under the cache's write lock, so that
// processes starting together extract it once.
func (c *Cache) Rootfs(a *Archive) (*Ref, error) {
	if err := c.checkIDMap(); err != nil {
		return nil, err
	}
	readOnly, err := c.init()
	if err != nil {
		return nil, err
	}
	final := c.RootfsPath(a.Digest)
	return c.tree(final, a.Digest, "rootfs/"+short(key(a.Digest))+c.mapSuffix(), readOnly, func() error { return c.extractInto(a, final) })
}

// tree returns the tree at final (made from digest) in use, making it with
// build first when it does not exist: under the cache's write lock, so that
// processes starting together build it once. A warm call costs a lock and
// a stat, and marks the tree used. name is the entry as a read-only cache
// names it in its error.
func (c *Cache) tree(final, digest, name string, readOnly error, build func() error) (*Ref, error) {
	ref, err := c.useLock(final+".lock", readOnly)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(final); err == nil && fi.IsDir() {
		c.MarkUsed(final)
		return &Ref{Path: final, Digest: digest, lock: ref}, nil
	}
	if readOnly != nil {
		ref.Unlock()
		return nil, c.readOnlyError(name, readOnly)
	}
	wl, err := c.writeLock()
	if err != nil {
		ref.Unlock()
		return nil, err
	}
	defer wl.Unlock()
	if fi, err := os.Stat(final); err == nil && fi.IsDir() {
		return &Ref{Path: final, Digest: digest, lock: ref}, nil
	}
	// Holding the write lock, no extraction is under way: temporary
	// directories are what a killed process left behind.
	c.removeTemps()
	if err := build(); err != nil {
		ref.Unlock()
		// Leave no lock file for an entry that does not exist, unless
		// another process is waiting on it.
		if l, lerr := lockFile(final+".lock", unix.LOCK_EX|unix.LOCK_NB); lerr == nil {
			os.Remove(final + ".lock")
			l.Unlock()
		}
		return nil, err
	}
	return &Ref{Path: final, Digest: digest, Extracted: true, lock: ref}, nil
}

func (c *Cache) extractInto(a *Archive, final string) error {
	op := "extracting " + a.Name + " into"
	// Named after the map too: removeTemps tells a mapped tree's.
	tmp, err := os.MkdirTemp(filepath.Dir(final), ".tmp-"+short(a.Digest)+c.mapSuffix()+"-")
	if err != nil {
		return c.writeError(op, unwrapPath(err))
	}
	ok := false
	defer func() {
		if !ok {
			RemoveTree(tmp)
		}
	}()
	rc, err := a.Open()
	if err != nil {
		return err
	}
	defer rc.Close()

	start := time.Now()
	h := sha256.New()
	opts := extractOptions{
		DropSetID: c.DropSetID,
		IDMap:     c.IDMap,
		Progress: func(done int64) {
			c.Log.Info("extracting rootfs", "archive", a.Name, "bytesDone", done, "bytesTotal", a.Size)
		},
	}
	if c.RootOwned {
		opts.Owner = &Owner{UID: 0, GID: 0}
		opts.NoSharedWrite = true
	}
	stats, err := extract(io.TeeReader(rc, h), tmp, opts)
	if err != nil {
		var unsafe *UnsafeEntryError
		var read *readError
		var errno syscall.Errno
		switch {
		case errors.Is(err, ErrNotArchive):
			return fmt.Errorf("%s: %w (pass a .tar or .tar.zst file, or a directory)", a.Name, err)
		case errors.As(err, &unsafe):
			return fmt.Errorf("%s: %w", a.Name, err)
		case errors.As(err, &read):
			return fmt.Errorf("extracting %s: %w (the archive is truncated or corrupt)", a.Name, err)
		case errors.As(err, &errno):
			// Writing the tree failed: the cache's filesystem is at
			// fault, not the archive.
			return c.writeError(op, err)
		default:
			return fmt.Errorf("%s: %w", a.Name, err)
		}
	}
	// Hash what the tar reader did not need (trailing padding).
	if _, err := io.Copy(h, rc); err != nil {
		return fmt.Errorf("reading %s: %w", a.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.Digest {
		return &DigestMismatchError{Name: a.Name, Expected: a.Digest, Actual: got}
	}
	if err := c.publish(tmp, final, op); err != nil {
		return err
	}
	ok = true
	c.Log.Info("rootfs extracted", "archive", a.Name, "digest", short(a.Digest),
		"files", stats.Files, "bytes", stats.Bytes, "skipped", stats.Skipped,
		"duration", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// publish renames the finished tree tmp to final, durably. A warm start
// trusts a tree under its final name without looking inside, so the tree
// must be on disk before it gets that name, and the name must be on disk
// before anything relies on it: after a power loss, either the whole tree
// is there or no tree is. On an error tmp is left for the caller to
// remove, final does not exist.
func (c *Cache) publish(tmp, final, op string) error {
	if err := syncFS(tmp); err != nil {
		return c.writeError(op, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return c.writeError(op, err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		// Not known to be durable: unpublish it for the caller's removal.
		os.Rename(final, tmp)
		return c.writeError(op, err)
	}
	return nil
}

// removeTemps removes temporary directories and files left by processes
// killed while writing, but those of trees made through an IDMap unless
// this process may change them. The caller holds the write lock.
func (c *Cache) removeTemps() {
	for _, dir := range []string{c.Dir, filepath.Join(c.Dir, "rootfs"), filepath.Join(c.Dir, "archives")} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if n := e.Name(); strings.HasPrefix(n, ".tmp-") && (c.changesMapped() || !strings.Contains(n, "+")) {
				p := filepath.Join(dir, e.Name())
				c.Log.Info("removing leftover from an interrupted extraction", "path", p)
				RemoveTree(p)
			}
		}
	}
}

// Prune removes the runc and init binaries and rootfs trees that no process uses,
// keeping those named in keep (paths returned in Refs). Trees made through
// an IDMap are left alone unless MappedTrees or IDMap is set. The memos of
// archive files that no longer exist go too.
//
// A cache this process cannot write into is left alone.
func (c *Cache) Prune(keep ...string) error {
	if fi, err := os.Stat(c.Dir); err == nil && fi.IsDir() {
		if readOnly, err := writable(c.Dir); err == nil && readOnly != nil {
			return nil
		}
	}
	wl, err := c.writeLock()
	if err != nil {
		return err
	}
	defer wl.Unlock()
	c.removeTemps()
	c.pruneMemos()
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	var candidates []string
	if ents, err := os.ReadDir(c.Dir); err == nil {
		for _, e := range ents {
			if n := e.Name(); isBinary(n) {
				candidates = append(candidates, filepath.Join(c.Dir, n))
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join(c.Dir, "rootfs")); err == nil {
		for _, e := range ents {
			n := e.Name()
			if c.KeepImageTrees && strings.HasPrefix(n, "image-") {
				continue // mrtd prune's to decide, with the image's blobs
			}
			if strings.Contains(n, "+") && !c.changesMapped() {
				continue // owned by ids this process cannot change
			}
			if !strings.HasPrefix(n, ".") && !strings.HasSuffix(n, ".lock") {
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
			RemoveTree(trash)
			c.Log.Info("removed unused cache entry", "path", p)
		}
		os.Remove(p + ".lock")
		l.Unlock()
	}
	return nil
}
