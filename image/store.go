package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// DigestMismatchError reports a blob whose bytes are not those its digest
// names. Nothing of it is kept.
type DigestMismatchError struct {
	// What is "layer", "config" or "manifest"; Digest is the expected one.
	What, Digest string
	// Actual is the digest of the bytes read; Size and ActualSize the
	// expected length (-1 when unknown) and the length read.
	Actual           string
	Size, ActualSize int64
}

func (e *DigestMismatchError) Error() string {
	if e.Size >= 0 && e.ActualSize != e.Size {
		return fmt.Sprintf("%s %s: got %d bytes, not the %d its manifest gives: refused, nothing of it kept", e.What, e.Digest, e.ActualSize, e.Size)
	}
	return fmt.Sprintf("%s %s: the bytes received hash to %s: refused, nothing of it kept", e.What, e.Digest, e.Actual)
}

// store is the blob cache: see the package doc.
type store struct {
	dir string
}

func (s *store) blobPath(d v1.Hash) string {
	return filepath.Join(s.dir, "blobs", d.Algorithm, d.Hex)
}

// has reports whether the blob is complete in the cache: size -1 when
// unknown.
func (s *store) has(d v1.Hash, size int64) bool {
	fi, err := os.Stat(s.blobPath(d))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

func (s *store) open(d v1.Hash) (*os.File, error) {
	return os.Open(s.blobPath(d))
}

func (s *store) read(d v1.Hash) ([]byte, error) {
	return os.ReadFile(s.blobPath(d))
}

// put writes the blob read from r into the cache, verifying its size (-1
// when unknown) and digest while it streams; progress, when set, is told
// the bytes written so far. A blob already there is not rewritten.
func (s *store) put(what string, d v1.Hash, size int64, r io.Reader, progress func(int64)) error {
	err := s.write(what, d, size, r, progress)
	var pe *fs.PathError
	if errors.As(err, &pe) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("writing %s %s into the image cache %s: %w", what, d, s.dir, err)
	}
	return err
}

func (s *store) write(what string, d v1.Hash, size int64, r io.Reader, progress func(int64)) error {
	if d.Algorithm != "sha256" {
		return fmt.Errorf("%s %s: only sha256 digests are supported", what, d)
	}
	if s.has(d, size) {
		return nil
	}
	dir := filepath.Dir(s.blobPath(d))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+d.Hex[:12]+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	defer f.Close()
	// Held while writing, so that removeTemps leaves the file alone.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return err
	}
	h := sha256.New()
	w := &countWriter{w: io.MultiWriter(f, h), progress: progress}
	src := r
	if size >= 0 {
		// One byte more than expected is enough to know it is too long.
		src = io.LimitReader(r, size+1)
	}
	_, err = io.Copy(w, src)
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	mismatch := &DigestMismatchError{What: what, Digest: d.String(), Actual: got, Size: size, ActualSize: w.n}
	switch {
	case err != nil && size >= 0 && w.n == size && got != d.String():
		// The reader noticed the mismatch first (go-containerregistry
		// verifies too): say it the same way.
		return mismatch
	case err != nil:
		return fmt.Errorf("%s %s: %w", what, d, err)
	case size >= 0 && w.n != size, got != d.String():
		return mismatch
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), s.blobPath(d)); err != nil {
		return err
	}
	return syncDir(dir)
}

// putBytes stores a blob already in memory (a manifest, a config).
func (s *store) putBytes(what string, d v1.Hash, data []byte) error {
	return s.put(what, d, int64(len(data)), strings.NewReader(string(data)), nil)
}

type countWriter struct {
	w        io.Writer
	n        int64
	progress func(int64)
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.progress != nil {
		c.progress(c.n)
	}
	return n, err
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// removeTemps removes downloads left by killed processes: temporary files
// no process holds locked, and older than a minute (one just created may
// not be locked yet).
func (s *store) removeTemps() {
	dir := filepath.Join(s.dir, "blobs", "sha256")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(p)
		}
		f.Close()
	}
}

// record is what a tag resolved to, or what another reference named when
// it was last used.
type record struct {
	// Name is the reference: a tag as Ref.Name; a digest reference, an OCI
	// layout or a docker-archive as Ref.String spells it, with an
	// absolute path.
	Name string `json:"name"`
	// Digest is what it resolved to: an index or a manifest, or a
	// docker-archive's config.
	Digest string `json:"digest"`
	// MediaType is the Digest's.
	MediaType string `json:"mediaType,omitempty"`
	// Resolved is when.
	Resolved time.Time `json:"resolved"`
}

// refPath is where the record of a reference is kept: the reference,
// escaped into one file name, or its hash when too long for one.
func (s *store) refPath(ref string) string {
	n := url.PathEscape(ref)
	if len(n) > 200 {
		sum := sha256.Sum256([]byte(ref))
		n = "sha256-" + hex.EncodeToString(sum[:])
	}
	return filepath.Join(s.dir, "refs", n)
}

// lookup returns the record of ref, or nil when there is none.
func (s *store) lookup(ref string) (*record, error) {
	data, err := os.ReadFile(s.refPath(ref))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil || r.Name != ref {
		// Torn by a crash before rename could not happen; anything else
		// is not ours: treat as absent.
		return nil, nil
	}
	if _, err := v1.NewHash(r.Digest); err != nil {
		return nil, nil
	}
	return &r, nil
}

// save records what ref resolved to.
func (s *store) save(r record) error {
	p := s.refPath(r.Name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// note records that name, a reference other than a tag (a digest
// reference, an OCI layout or a docker-archive, as Ref.String spells it),
// names digest, for listings only: a cache it cannot write into goes
// without.
func (s *store) note(name, digest, mediaType string) error {
	if rec, _ := s.lookup(name); rec != nil && rec.Digest == digest {
		return nil
	}
	err := s.save(record{Name: name, Digest: digest, MediaType: mediaType, Resolved: time.Now().UTC()})
	if errors.Is(err, unix.EROFS) || errors.Is(err, fs.ErrPermission) {
		return nil
	}
	return err
}

// hashOf is the sha256 of data as a v1.Hash.
func hashOf(data []byte) v1.Hash {
	sum := sha256.Sum256(data)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
