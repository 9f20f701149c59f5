package rootfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// MountPoints are the directories every rootfs must have: runc mounts over
// them, and creating them at run time would write into the shared tree.
var MountPoints = []string{"proc", "sys", "dev", "tmp", "run"}

// Owner is a numeric uid and gid.
type Owner struct {
	UID, GID int
}

// UnsafeEntryError reports an archive entry that would be written outside the
// extraction target, or through something that is not a directory.
type UnsafeEntryError struct {
	Entry  string
	Reason string
}

func (e *UnsafeEntryError) Error() string {
	return fmt.Sprintf("unsafe archive entry %q: %s (the archive is malformed or malicious; rebuild it)", e.Entry, e.Reason)
}

// ErrNotArchive is returned for input that is neither a tar nor a zstd stream.
var ErrNotArchive = errors.New("not a tar or tar.zst archive")

// readError is an error reading or decoding the archive: the archive is
// truncated or corrupt, as opposed to an error writing the tree, which is
// the cache's filesystem's.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

func (e *readError) Unwrap() error { return e.err }

// archiveReader marks the errors of reading an entry's content as
// readErrors; io.EOF is passed as is.
type archiveReader struct{ r io.Reader }

func (a archiveReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

// extractOptions tune extract.
type extractOptions struct {
	// Owner, when set, is given every entry (0:0 when mrtd runs as root).
	Owner *Owner
	// IDMap, when set, gives every entry the owner its archive ids map
	// to; an entry whose ids it does not map fails with an
	// *UnmappedIDError. Not with Owner.
	IDMap *IDMap
	// DropSetID clears setuid and setgid bits.
	DropSetID bool
	// NoSharedWrite clears the group and other write bits, so that only
	// the owner may change the tree.
	NoSharedWrite bool
	// Progress, when set, is called about once a second once extraction has
	// taken longer than a second, with the compressed bytes consumed so far.
	Progress func(done int64)
	// MaxBytes, when set, bounds the bytes written into regular files:
	// a file that would pass it fails with errTooBig before it is written.
	MaxBytes int64
}

// errTooBig is extractOptions.MaxBytes reached.
var errTooBig = errors.New("size limit reached")

// extractStats counts what extract did.
type extractStats struct {
	Files, Dirs, Symlinks, Hardlinks, Skipped int
	Bytes                                     int64
}

// countingReader counts bytes read through it. The zstd decoder reads from
// its own goroutine while progress is reported from the extracting one.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// decompress detects a zstd stream or a plain tar and returns a reader of the
// tar bytes. close releases the decoder.
func decompress(r io.Reader) (tr io.Reader, close func(), err error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(512)
	if len(magic) >= 4 && bytes.Equal(magic[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(2))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return d, d.Close, nil
	}
	if len(magic) == 512 && (bytes.Equal(magic[257:262], []byte("ustar")) || allZero(magic)) {
		return br, func() {}, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	return nil, nil, ErrNotArchive
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// cleanName validates an entry name (or hardlink target) and returns it
// relative to the extraction root, "" for the root itself.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if strings.HasPrefix(name, "/") {
		return "", errors.New("absolute path")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", errors.New("path contains \"..\"")
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// extractor writes one archive, or an image's layers one after the other,
// into a fresh directory. It keeps the set of directories and files it
// created itself: every entry's parent must be one of its own directories, so
// no write can pass through a symlink, and a hardlink may only point at a
// regular file it wrote.
//
// Applying layers (layered), the sets span the layers: a parent created by a
// lower layer is one of its own, a symlink a lower layer created is not a
// directory, and a hardlink may point at a file of a lower layer. A layer's
// entry replaces a lower layer's entry of any type; .wh. whiteouts and
// .wh..wh..opq markers hide lower layers' entries (applyLayer).
type extractor struct {
	root  string
	opts  extractOptions
	dirs  map[string]*tar.Header // "" is the root
	files map[string]byte        // typeflag of every non-directory
	buf   []byte
	stats extractStats

	// layered is set when applying an image's layers.
	layered bool
	// kids holds each directory's entries by their full names, when
	// layered: whiteouts remove subtrees.
	kids map[string]map[string]struct{}
	// touched holds what the current layer wrote, and every directory
	// above it: what no whiteout of this layer may hide.
	touched map[string]bool
	// what names the input in errors: "archive" or "image".
	what string
}

func newExtractor(root string, opts extractOptions) *extractor {
	return &extractor{
		root:  root,
		opts:  opts,
		dirs:  map[string]*tar.Header{"": nil},
		files: map[string]byte{},
		buf:   make([]byte, 1<<20),
		what:  "archive",
	}
}

// extract unpacks the tar (optionally zstd-compressed) stream r into root,
// which must be an empty directory.
func extract(r io.Reader, root string, opts extractOptions) (extractStats, error) {
	x := newExtractor(root, opts)
	counted := &countingReader{r: r}
	tarStream, closeFn, err := decompress(counted)
	if err != nil {
		if !errors.Is(err, ErrNotArchive) {
			err = &readError{err}
		}
		return x.stats, err
	}
	defer closeFn()

	if err := x.apply(tarStream, counted); err != nil {
		return x.stats, err
	}
	// Read the compressed stream to its end: a zstd frame's checksum is
	// only verified once the decoder reaches it.
	if _, err := io.Copy(io.Discard, tarStream); err != nil {
		return x.stats, &readError{fmt.Errorf("reading archive: %w", err)}
	}
	return x.stats, x.finish()
}

// apply writes the entries of the tar stream r. counted, when set, counts
// the bytes Progress reports.
func (x *extractor) apply(r io.Reader, counted *countingReader) error {
	lastReport := time.Now()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &readError{fmt.Errorf("reading %s: %w", x.what, err)}
		}
		if err := x.entry(hdr, archiveReader{tr}); err != nil {
			return err
		}
		if x.opts.Progress != nil && counted != nil {
			if now := time.Now(); now.Sub(lastReport) >= time.Second {
				lastReport = now
				x.opts.Progress(counted.n.Load())
			}
		}
	}
}

// finish creates the missing mount points and gives directories their
// modes, owners and times.
func (x *extractor) finish() error {
	if err := x.mountPoints(); err != nil {
		return err
	}
	return x.finishDirs()
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return &UnsafeEntryError{Entry: hdr.Name, Reason: err.Error()}
	}
	if x.layered && strings.HasPrefix(name, whiteoutMeta) && name != whiteoutOpaque {
		// AUFS's own metadata (/.wh..wh.plnk/, /.wh..wh.aufs): not
		// part of the image, as docker and containerd treat it.
		x.stats.Skipped++
		return nil
	}
	if x.layered && strings.HasPrefix(path.Base(name), whiteoutPrefix) {
		return x.whiteout(name, hdr)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(name, hdr)
	case tar.TypeReg, tar.TypeRegA:
		return x.file(name, hdr, r)
	case tar.TypeSymlink:
		return x.symlink(name, hdr)
	case tar.TypeLink:
		return x.hardlink(name, hdr)
	default:
		// Device nodes, FIFOs and anything else: runc provides /dev, and
		// nothing else in a rootfs needs special files.
		x.stats.Skipped++
		return nil
	}
}

func (x *extractor) full(name string) string {
	return filepath.Join(x.root, filepath.FromSlash(name))
}

// parentName is the directory that holds name, "" for the root.
func parentName(name string) string {
	d := path.Dir(name)
	if d == "." {
		return ""
	}
	return d
}

// parent makes sure the parent directory of name exists and is one that
// this extraction created.
func (x *extractor) parent(entry, name string) error {
	return x.mkdirAll(entry, path.Dir(name))
}

func (x *extractor) mkdirAll(entry, dir string) error {
	if dir == "." {
		dir = ""
	}
	if _, ok := x.dirs[dir]; ok {
		return nil
	}
	if t, ok := x.files[dir]; ok {
		return &UnsafeEntryError{Entry: entry, Reason: notDirReason(t)}
	}
	if err := x.mkdirAll(entry, path.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(x.full(dir), 0o700); err != nil {
		return err
	}
	x.addDir(dir, &tar.Header{Mode: 0o755, ModTime: time.Unix(0, 0)})
	x.stats.Dirs++
	return nil
}

func notDirReason(typeflag byte) string {
	if typeflag == tar.TypeSymlink {
		return "it would be written through a symlink"
	}
	return "its parent is not a directory"
}

// addDir records name as a directory with the mode, owner and time of hdr,
// written by the current layer; addFile records a non-directory.
func (x *extractor) addDir(name string, hdr *tar.Header) {
	x.dirs[name] = hdr
	x.added(name)
}

func (x *extractor) addFile(name string, typeflag byte) {
	x.files[name] = typeflag
	x.added(name)
}

// added files name under its parent and marks it and the directories above
// it as the current layer's, when applying layers.
func (x *extractor) added(name string) {
	if !x.layered || name == "" {
		return
	}
	dir := parentName(name)
	k := x.kids[dir]
	if k == nil {
		k = map[string]struct{}{}
		x.kids[dir] = k
	}
	k[name] = struct{}{}
	for n := name; !x.touched[n]; n = parentName(n) {
		x.touched[n] = true
		if n == "" {
			break
		}
	}
}

// remove removes name, and everything under it, from the tree and from the
// sets. It is only ever called with a name in the sets, whose parents are
// therefore directories this extraction created: os.RemoveAll follows no
// symlink on the way, and directories are still writable (finishDirs has
// not run).
func (x *extractor) remove(name string) error {
	if err := os.RemoveAll(x.full(name)); err != nil {
		return err
	}
	x.forget(name)
	if k := x.kids[parentName(name)]; k != nil {
		delete(k, name)
	}
	return nil
}

func (x *extractor) forget(name string) {
	for kid := range x.kids[name] {
		x.forget(kid)
	}
	delete(x.kids, name)
	delete(x.dirs, name)
	delete(x.files, name)
}

// lower reports whether name exists and no entry of the current layer wrote
// it or anything under it: a layer's entry may replace it whatever its type.
func (x *extractor) lower(name string) bool {
	return x.layered && !x.touched[name]
}

// owner returns the owner to give the entry (named so in the archive)
// that the archive says uid:gid owns, or nil to leave it the extracting
// process's.
func (x *extractor) owner(entry string, uid, gid int) (*Owner, error) {
	if x.opts.IDMap == nil {
		return x.opts.Owner, nil
	}
	o, err := x.opts.IDMap.owner(entry, uid, gid)
	if err != nil {
		return nil, err
	}
	return &o, nil
}

func (x *extractor) mode(hdr *tar.Header) os.FileMode {
	m := os.FileMode(hdr.Mode).Perm()
	if hdr.Mode&04000 != 0 && !x.opts.DropSetID {
		m |= os.ModeSetuid
	}
	if hdr.Mode&02000 != 0 && !x.opts.DropSetID {
		m |= os.ModeSetgid
	}
	if hdr.Mode&01000 != 0 {
		m |= os.ModeSticky
	}
	if x.opts.NoSharedWrite {
		m &^= 0o022
	}
	return m
}

func (x *extractor) dir(name string, hdr *tar.Header) error {
	if name == "" {
		// "./": the root keeps mode 0755, whatever the archive says, so
		// that runc can always enter it.
		return nil
	}
	// Its owner is given last (finishDirs), but an unmapped one is this
	// entry's error.
	if _, err := x.owner(hdr.Name, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if _, ok := x.files[name]; ok {
		if !x.lower(name) {
			return &UnsafeEntryError{Entry: hdr.Name, Reason: "a directory replaces a file or symlink"}
		}
		// A lower layer's file or symlink: this layer replaces it.
		if err := x.remove(name); err != nil {
			return err
		}
	}
	if err := x.mkdirAll(hdr.Name, name); err != nil {
		return err
	}
	// Over an existing directory, the entry's mode, owner and time win;
	// what the directory holds stays.
	x.addDir(name, hdr)
	return nil
}

// replace makes room for a non-directory entry at name.
func (x *extractor) replace(hdr *tar.Header, name string) error {
	if name == "" {
		return &UnsafeEntryError{Entry: hdr.Name, Reason: "it names the root directory"}
	}
	if _, ok := x.dirs[name]; ok {
		if !x.lower(name) {
			return &UnsafeEntryError{Entry: hdr.Name, Reason: "it replaces a directory"}
		}
		// A lower layer's directory: this layer replaces it, and all it
		// holds.
		return x.remove(name)
	}
	if err := x.parent(hdr.Name, name); err != nil {
		return err
	}
	if _, ok := x.files[name]; ok {
		// A later entry replaces an earlier one, as tar does. Never
		// written in place: a hardlink to the earlier file keeps what it
		// linked to.
		if err := os.Remove(x.full(name)); err != nil {
			return err
		}
	}
	return nil
}

func (x *extractor) file(name string, hdr *tar.Header, r io.Reader) error {
	owner, err := x.owner(hdr.Name, hdr.Uid, hdr.Gid)
	if err != nil {
		return err
	}
	if err := x.replace(hdr, name); err != nil {
		return err
	}
	if x.opts.MaxBytes > 0 && hdr.Size > x.opts.MaxBytes-x.stats.Bytes {
		return errTooBig
	}
	p := x.full(name)
	n, err := x.writeFile(p, hdr, owner, r)
	if err != nil {
		var re *readError
		if errors.As(err, &re) {
			return &readError{fmt.Errorf("reading %s: %w", hdr.Name, re.err)}
		}
		// The entry's name says where; the temporary path would not.
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Path == p {
			err = pe.Err
		}
		return fmt.Errorf("writing %s: %w", hdr.Name, err)
	}
	x.addFile(name, tar.TypeReg)
	x.stats.Files++
	x.stats.Bytes += n
	return nil
}

// writeFile creates the regular file p, which must not exist, with the
// content of r, and gives it hdr's mode and time and owner, when not nil.
// It works on the file descriptor alone: an *os.File costs a regular file
// 5 more system calls (fcntl, and epoll_ctl to register it with the
// poller, which refuses it), and the time set through the descriptor
// needs no second lookup of the path.
func (x *extractor) writeFile(p string, hdr *tar.Header, owner *Owner, r io.Reader) (int64, error) {
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: p, Err: err}
	}
	n, err := io.CopyBuffer(fdWriter(fd), r, x.buf)
	if err == nil && n != hdr.Size {
		err = &readError{io.ErrUnexpectedEOF}
	}
	if err == nil && owner != nil {
		err = unix.Fchown(fd, owner.UID, owner.GID)
	}
	if err == nil {
		// After chown, which clears setuid/setgid bits.
		err = unix.Fchmod(fd, unixMode(x.mode(hdr)))
	}
	if err == nil {
		err = futimens(fd, hdr.ModTime)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = cerr
	}
	return n, err
}

// fdWriter writes to a file descriptor. It has no ReadFrom, so CopyBuffer
// uses the extractor's buffer.
type fdWriter int

func (w fdWriter) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(int(w), p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrShortWrite
		}
		done += n
	}
	return done, nil
}

// unixMode is m as chmod takes it.
func unixMode(m os.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		v |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		v |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		v |= unix.S_ISVTX
	}
	return v
}

// futimens sets the atime and mtime of the open file fd (utimensat with no
// path, as futimens(3) does).
func futimens(fd int, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	times := [2]unix.Timespec{ts, ts}
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&times[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func (x *extractor) symlink(name string, hdr *tar.Header) error {
	owner, err := x.owner(hdr.Name, hdr.Uid, hdr.Gid)
	if err != nil {
		return err
	}
	if err := x.replace(hdr, name); err != nil {
		return err
	}
	if hdr.Linkname == "" {
		return &UnsafeEntryError{Entry: hdr.Name, Reason: "symlink without a target"}
	}
	p := x.full(name)
	// The target is stored as is: it is only ever resolved inside the
	// container, and this extraction never follows it.
	if err := os.Symlink(hdr.Linkname, p); err != nil {
		return err
	}
	if owner != nil {
		if err := os.Lchown(p, owner.UID, owner.GID); err != nil {
			return err
		}
	}
	if err := setTimes(p, hdr.ModTime); err != nil {
		return err
	}
	x.addFile(name, tar.TypeSymlink)
	x.stats.Symlinks++
	return nil
}

// hardlink links name to the file its target names now: as with docker and
// containerd, a target a later entry replaces or whites out leaves the link
// with the content it had when the link was made, as no file is ever
// written in place. The link shares the target's inode, and its owner: the
// entry's own owner must still be one the IDMap maps.
func (x *extractor) hardlink(name string, hdr *tar.Header) error {
	if _, err := x.owner(hdr.Name, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return &UnsafeEntryError{Entry: hdr.Name, Reason: "hardlink target: " + err.Error()}
	}
	if t, ok := x.files[target]; !ok || t != tar.TypeReg {
		return &UnsafeEntryError{Entry: hdr.Name, Reason: fmt.Sprintf("hardlink to %q, which is not a file extracted before it", hdr.Linkname)}
	}
	if target == name {
		x.added(name)
		return nil
	}
	if err := x.replace(hdr, name); err != nil {
		return err
	}
	if _, ok := x.files[target]; !ok {
		// Replacing a lower layer's directory removed the target.
		return &UnsafeEntryError{Entry: hdr.Name, Reason: fmt.Sprintf("hardlink to %q, which it replaces", hdr.Linkname)}
	}
	if err := os.Link(x.full(target), x.full(name)); err != nil {
		return err
	}
	x.addFile(name, tar.TypeReg)
	x.stats.Hardlinks++
	return nil
}

const (
	// whiteoutPrefix marks, in a layer, an entry that hides the lower
	// layers' entry of the name that follows it.
	whiteoutPrefix = ".wh."
	// whiteoutOpaque, in a layer's directory, hides all the lower layers'
	// entries of that directory.
	whiteoutOpaque = whiteoutMeta + ".opq"
	// whiteoutMeta starts the names of AUFS's metadata, and the opaque
	// marker.
	whiteoutMeta = whiteoutPrefix + whiteoutPrefix
)

// whiteout applies a whiteout or an opaque marker. Either hides what lower
// layers put there and never what the current layer wrote, whichever comes
// first in the layer: what the current layer wrote is touched, and hide
// keeps it.
func (x *extractor) whiteout(name string, hdr *tar.Header) error {
	dir, base := parentName(name), path.Base(name)
	if base == whiteoutOpaque {
		// The directory is part of this layer, whatever it held below.
		if err := x.mkdirAll(hdr.Name, dir); err != nil {
			return err
		}
		x.added(dir)
		return x.hideKids(dir)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		// Metadata of no known meaning below the root.
		x.stats.Skipped++
		return nil
	}
	hidden := base[len(whiteoutPrefix):]
	if hidden == "" || hidden == "." || hidden == ".." {
		return &UnsafeEntryError{Entry: hdr.Name, Reason: "whiteout of no valid name"}
	}
	// A whiteout is a write: not through a symlink either.
	for d := dir; ; d = parentName(d) {
		if _, ok := x.dirs[d]; ok {
			break
		}
		if t, ok := x.files[d]; ok {
			return &UnsafeEntryError{Entry: hdr.Name, Reason: notDirReason(t)}
		}
	}
	return x.hide(path.Join(dir, hidden))
}

// hide removes what lower layers put at name: all of it, unless the current
// layer wrote name or something under it; then, what lower layers put
// under it.
func (x *extractor) hide(name string) error {
	_, isDir := x.dirs[name]
	_, isFile := x.files[name]
	switch {
	case !isDir && !isFile:
		return nil
	case !x.touched[name]:
		return x.remove(name)
	case isDir:
		return x.hideKids(name)
	}
	return nil
}

// hideKids hides what lower layers put in the directory dir.
func (x *extractor) hideKids(dir string) error {
	kids := make([]string, 0, len(x.kids[dir]))
	for kid := range x.kids[dir] {
		kids = append(kids, kid)
	}
	for _, kid := range kids {
		if err := x.hide(kid); err != nil {
			return err
		}
	}
	return nil
}

// mountPoints creates the directories runc mounts over when the archive
// lacks them.
func (x *extractor) mountPoints() error {
	for _, mp := range MountPoints {
		if _, ok := x.dirs[mp]; ok {
			continue
		}
		if _, ok := x.files[mp]; ok {
			return fmt.Errorf("the %s's /%s is not a directory; containers need it as a mount point", x.what, mp)
		}
		mode := int64(0o755)
		if mp == "tmp" {
			mode = 0o1777
		}
		if err := x.dir(mp, &tar.Header{Name: mp, Mode: mode, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
	}
	return nil
}

// finishDirs applies directory modes, owners and times last, deepest first,
// so that a read-only directory did not stop its own extraction and its
// mtime is not changed by the entries written into it. The root, and the
// parents the archive does not list, are owned by its id 0.
func (x *extractor) finishDirs() error {
	names := make([]string, 0, len(x.dirs))
	for name := range x.dirs {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, name := range names {
		hdr := x.dirs[name]
		if hdr == nil { // the root: keep it traversable
			hdr = &tar.Header{Mode: 0o755, ModTime: time.Unix(0, 0)}
		}
		p := x.full(name)
		entry := hdr.Name
		switch {
		case name == "":
			entry = "./"
		case entry == "": // a parent the archive does not list
			entry = name + "/"
		}
		owner, err := x.owner(entry, hdr.Uid, hdr.Gid)
		if err != nil {
			return err
		}
		if owner != nil {
			// Before chmod: chown may clear the setgid bit.
			if err := os.Lchown(p, owner.UID, owner.GID); err != nil {
				return err
			}
		}
		if err := os.Chmod(p, x.mode(hdr)); err != nil {
			return err
		}
		if err := setTimes(p, hdr.ModTime); err != nil {
			return err
		}
	}
	return nil
}

// setTimes sets the atime and mtime of p, not following a symlink.
func setTimes(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}
