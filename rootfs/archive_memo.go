package rootfs

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// An archive memo remembers the digest of an archive file by its stat, as
// git's index remembers a file's blob, so that a warm start from an
// archive file costs a stat and a small read, not a hash of the archive:
//
//	<Dir>/archives/<sha256 of the archive's absolute path>
//
// holds the path, the device, inode, size, mtime and ctime (ns) the file
// had when it was hashed, when that hash began, and the digest. Any of
// these fields that differs means the file changed: it is hashed again and
// the memo rewritten. ctime catches content replaced with its size and
// mtime restored, as no process can set ctime.
//
// Racy files: a write in the same timestamp tick as the stat leaves the
// stat unchanged. So a memo is trusted only when the file's mtime and
// ctime are older, by racyWindow, than the moment its hash began: any
// write after that moment gives the file a ctime within the window. A
// file that was changed just before it was hashed is hashed again next
// time, and memoized then.
//
// A memo can name the wrong digest only if the file changed without its
// stat changing. A warm start then returns the tree of the memo's digest,
// which is that digest's true content; a cold one extracts and verifies
// the archive against the digest, and ArchiveFile.Open then forgets the
// memo, hashes the file and tries once more.
//
// A cache this process cannot write into neither reads nor writes memos:
// it hashes the archive, as before.

// racyWindow is how much older than the start of its hash a file's mtime
// and ctime must be for its memo to be trusted. It covers filesystems
// that keep timestamps in whole seconds (two, for FAT) and the coarse
// clock the kernel stamps files with.
const racyWindow = 2 * time.Second

// hashFile returns the sha256 and length of what r holds; tests replace
// it to count the archives hashed.
var hashFile = func(r io.Reader) (digest string, n int64, err error) {
	h := sha256.New()
	n, err = io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// memoClock says when a hash begins; tests move it.
var memoClock = time.Now

// archiveMemo is one archive's memo.
type archiveMemo struct {
	Path             string
	Dev, Ino         uint64
	Size             int64
	MtimeNs, CtimeNs int64
	HashedNs         int64 // when the hash began
	Digest           string
}

const memoMagic = "mrtd-archive-memo 1"

// memoPath is where the memo of the archive at the absolute path abs is.
func (c *Cache) memoPath(abs string) string {
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(c.Dir, "archives", hex.EncodeToString(sum[:]))
}

// stated returns st's fields as a memo holds them.
func stated(abs string, st *unix.Stat_t) archiveMemo {
	return archiveMemo{
		Path:    abs,
		Dev:     st.Dev,
		Ino:     st.Ino,
		Size:    st.Size,
		MtimeNs: st.Mtim.Nano(),
		CtimeNs: st.Ctim.Nano(),
	}
}

// matches reports whether m, read from disk, may stand for a file whose
// stat is now: same fields, and not racy.
func (m *archiveMemo) matches(now archiveMemo) bool {
	return m.Path == now.Path && m.Dev == now.Dev && m.Ino == now.Ino && m.Size == now.Size &&
		m.MtimeNs == now.MtimeNs && m.CtimeNs == now.CtimeNs && !m.racy()
}

// racy reports whether the file may have changed in the tick it was
// stated in, after the hash began.
func (m *archiveMemo) racy() bool {
	limit := m.HashedNs - racyWindow.Nanoseconds()
	return m.MtimeNs >= limit || m.CtimeNs >= limit
}

func (m *archiveMemo) marshal() []byte {
	return fmt.Appendf(nil, "%s\npath %s\ndev %d\nino %d\nsize %d\nmtime %d\nctime %d\nhashed %d\ndigest %s\n",
		memoMagic, strconv.Quote(m.Path), m.Dev, m.Ino, m.Size, m.MtimeNs, m.CtimeNs, m.HashedNs, m.Digest)
}

// readMemo reads the memo at p; any memo it cannot read or parse in full
// is none.
func readMemo(p string) (*archiveMemo, bool) {
	f, err := os.Open(p)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	// A memo is a few hundred bytes; more is not one.
	b, err := io.ReadAll(io.LimitReader(f, 8<<10))
	if err != nil {
		return nil, false
	}
	return parseMemo(b)
}

func parseMemo(b []byte) (*archiveMemo, bool) {
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	if !sc.Scan() || sc.Text() != memoMagic {
		return nil, false
	}
	var m archiveMemo
	seen := map[string]bool{}
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || seen[k] {
			return nil, false
		}
		seen[k] = true
		var err error
		switch k {
		case "path":
			m.Path, err = strconv.Unquote(v)
		case "dev":
			m.Dev, err = strconv.ParseUint(v, 10, 64)
		case "ino":
			m.Ino, err = strconv.ParseUint(v, 10, 64)
		case "size":
			m.Size, err = strconv.ParseInt(v, 10, 64)
		case "mtime":
			m.MtimeNs, err = strconv.ParseInt(v, 10, 64)
		case "ctime":
			m.CtimeNs, err = strconv.ParseInt(v, 10, 64)
		case "hashed":
			m.HashedNs, err = strconv.ParseInt(v, 10, 64)
		case "digest":
			m.Digest = v
			if len(v) != sha256.Size*2 {
				err = errors.New("digest")
			} else {
				_, err = hex.DecodeString(v)
			}
		default:
			err = errors.New(k)
		}
		if err != nil {
			return nil, false
		}
	}
	// A torn write leaves a prefix: the digest, last, is missing then.
	if len(seen) != 8 || sc.Err() != nil {
		return nil, false
	}
	return &m, true
}

// writeMemo writes m atomically. A memo not written costs only a hash on
// the next start, so failures are not reported; nor is the memo synced:
// after a power loss, a memo lost or torn is none.
func (c *Cache) writeMemo(m *archiveMemo) {
	p := c.memoPath(m.Path)
	dir := filepath.Dir(p)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return
	}
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	_, err = f.Write(m.marshal())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		os.Rename(f.Name(), p)
	}
}

// forgetMemo removes the memo of the archive at the absolute path abs.
func (c *Cache) forgetMemo(abs string) {
	os.Remove(c.memoPath(abs))
}

// fileArchive returns the archive at path, its digest from its memo when
// that can be trusted (memo is true then), hashing it otherwise. In a
// cache this process can write into, a file it hashed gets a memo, unless
// it is racy or changed while it was hashed.
func (c *Cache) fileArchive(path string) (a *Archive, memo bool, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, false, err
	}
	readOnly, err := c.init()
	if err != nil {
		return nil, false, err
	}
	archive := func(digest string, size int64) *Archive {
		return &Archive{
			Name:   path,
			Digest: digest,
			Size:   size,
			Open:   func() (io.ReadCloser, error) { return os.Open(path) },
		}
	}
	if readOnly == nil {
		var st unix.Stat_t
		if err := unix.Stat(abs, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			if m, ok := readMemo(c.memoPath(abs)); ok && m.matches(stated(abs, &st)) {
				return archive(m.Digest, m.Size), true, nil
			}
		}
	}

	hashed := memoClock()
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	var before, after unix.Stat_t
	statErr := unix.Fstat(int(f.Fd()), &before)
	digest, n, err := hashFile(f)
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", path, err)
	}
	if statErr == nil {
		statErr = unix.Fstat(int(f.Fd()), &after)
	}
	if readOnly == nil && statErr == nil && before.Mode&unix.S_IFMT == unix.S_IFREG {
		m := stated(abs, &before)
		m.HashedNs, m.Digest = hashed.UnixNano(), digest
		if m.matches(stated(abs, &after)) && m.Size == n {
			c.writeMemo(&m)
		} else {
			// Racy, or changed while read: hash it again next time.
			c.forgetMemo(abs)
		}
	}
	return archive(digest, n), false, nil
}

// pruneMemos removes the memos of archives that no longer exist, and
// whatever in archives/ is no memo. The caller holds the write lock.
func (c *Cache) pruneMemos() {
	dir := filepath.Join(c.Dir, "archives")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			continue // removeTemps's
		}
		p := filepath.Join(dir, e.Name())
		m, ok := readMemo(p)
		if ok && c.memoPath(m.Path) == p {
			if _, err := os.Stat(m.Path); !errors.Is(err, fs.ErrNotExist) {
				continue
			}
			p = m.Path
		}
		if os.Remove(filepath.Join(dir, e.Name())) == nil {
			c.Log.Info("removed archive memo", "archive", p)
		}
	}
}
