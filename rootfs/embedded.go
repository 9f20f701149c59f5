package rootfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrNotEmbedded is returned by Builtin in a binary built without assets,
// and by Prepare when it would need them.
var ErrNotEmbedded = errors.New("this mrtd was built without embedded runc and rootfs")

// ErrNoInit is returned by Prepared.Init when this binary carries no init
// (it carries none without runc and the rootfs either).
var ErrNoInit = errors.New("this mrtd was built without an embedded init")

// ErrMalformedDigests is returned by Builtin when the digests recorded at
// build time are not sha256 digests: the build went wrong.
var ErrMalformedDigests = errors.New("embedded asset digests are malformed")

// Embedded describes the runc binary, the init and the rootfs archive
// carried by mrtd, with the sha256 digests recorded when they were built.
type Embedded struct {
	Runc         []byte
	RuncDigest   string
	RuncVersion  string
	Rootfs       []byte
	RootfsDigest string
	// Init is the static init --init runs as a container's pid 1;
	// InitVersion names it and its version ("tini 0.19.0-1+b3").
	Init        []byte
	InitDigest  string
	InitVersion string
}

// asset is one embedded file, its "sha256sum"-style line and, for a
// binary, its version.
type asset struct {
	data         []byte
	sum, version string
}

func newEmbedded(runc, rootfs, init asset) (*Embedded, error) {
	e := &Embedded{
		Runc:         runc.data,
		RuncDigest:   firstField(runc.sum),
		RuncVersion:  strings.TrimSpace(runc.version),
		Rootfs:       rootfs.data,
		RootfsDigest: firstField(rootfs.sum),
		Init:         init.data,
		InitDigest:   firstField(init.sum),
		InitVersion:  strings.TrimSpace(init.version),
	}
	if !validDigest(e.RuncDigest) || !validDigest(e.RootfsDigest) || !validDigest(e.InitDigest) {
		return nil, ErrMalformedDigests
	}
	return e, nil
}

// Open extracts the embedded rootfs into c, unless it is there already, and
// returns the tree in use: the embedded rootfs is a Source.
func (e *Embedded) Open(c *Cache) (*Ref, error) {
	return c.Rootfs(e.RootfsArchive())
}

func (e *Embedded) String() string { return "embedded rootfs" }

// RootfsArchive returns the embedded rootfs as an Archive for Cache.Rootfs.
func (e *Embedded) RootfsArchive() *Archive {
	return &Archive{
		Name:   "embedded rootfs",
		Digest: e.RootfsDigest,
		Size:   int64(len(e.Rootfs)),
		Open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(e.Rootfs)), nil
		},
	}
}

// firstField returns the digest from a "sha256sum"-style line.
func firstField(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func validDigest(d string) bool {
	if len(d) != 64 {
		return false
	}
	for _, c := range d {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// DigestMismatchError reports an archive whose content does not hash to the
// digest it was recorded with. What to do (rebuild the binary that carries
// it, choose another rootfs) is the caller's to say.
type DigestMismatchError struct {
	Name     string
	Expected string
	Actual   string
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("%s is corrupt: sha256 %s, expected %s", e.Name, short(e.Actual), short(e.Expected))
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
