package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ImageTree is an image to flatten into the cache.
type ImageTree struct {
	// Name says where it comes from, for messages (the image reference).
	Name string
	// Digest is the image manifest's digest, "sha256:<hex>": the cache
	// key.
	Digest string
	// Layers, bottom first.
	Layers []Layer
	// MaxSize bounds the bytes written (regular files' sizes summed, a
	// file a later layer replaces counted too); 0 means
	// DefaultMaxImageSize.
	MaxSize int64
}

// Layer is one layer as an uncompressed tar stream.
type Layer struct {
	// DiffID is "sha256:<hex>" of the uncompressed tar; extraction fails,
	// naming the layer, when the bytes read do not hash to it.
	DiffID string
	// Open returns the layer's tar stream from its start. Errors it
	// returns are passed on, wrapped.
	Open func() (io.ReadCloser, error)
}

// DefaultMaxImageSize bounds what an image may write into the cache unless
// ImageTree.MaxSize says otherwise: 8 GiB. It is there against
// decompression bombs (a few MiB of gzip can inflate to terabytes of
// zeros), so it is set well above real worker images rather than close to
// them: Archivematica's MCPClient, the reference, unpacks to about 3 GB,
// and the count includes files a later layer replaces; an image larger
// than that is rare enough that its user can raise the limit. 8 GiB is
// still a size a cache's filesystem usually has to spare.
const DefaultMaxImageSize int64 = 8 << 30

// ImageSizeError is the size limit hit: the image would write more than
// Limit bytes into the cache. Nothing of it is kept.
type ImageSizeError struct {
	Name  string
	Limit int64
}

func (e *ImageSizeError) Error() string {
	return fmt.Sprintf("image %s unpacks to more than %s, the size limit (a decompression bomb, or an image larger than allowed)", e.Name, formatBytes(e.Limit))
}

// formatBytes says n in the largest binary unit that divides it, or in
// bytes.
func formatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// sha256Digest returns the hex of a "sha256:<hex>" digest, or an error
// saying what d is not.
func sha256Digest(what, d string) (string, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || !validDigest(h) {
		return "", fmt.Errorf("%s %q is not a sha256 digest (sha256:<64 hex digits>)", what, d)
	}
	return h, nil
}

// ImagePath is where the tree flattened from the image with this manifest
// digest ("sha256:<hex>") is, or would be, in the cache: for Prune's keep
// list. With an IDMap, it is the tree flattened through it.
func (c *Cache) ImagePath(digest string) string {
	return filepath.Join(c.Dir, "rootfs", imageKey(digest)+c.mapSuffix())
}

// imageKey is the cache key an image is flattened under: image-<hex>, apart
// from archives' keys (<hex>) so that the cache can tell them apart, and
// as independent of the uid container root maps to as theirs.
func imageKey(digest string) string {
	return "image-" + strings.TrimPrefix(digest, "sha256:")
}

// Image makes sure the image is flattened in the cache and returns the tree
// in use, as Rootfs does for an archive: a warm call costs a lock and a
// stat; a cold one applies the layers in order into a temporary sibling,
// checking each against its DiffID as it reads it, then publishes it, all
// under the cache's write lock, so that processes starting together
// flatten it once. Ref.Digest is the manifest digest.
//
// Each layer is an untrusted archive, under extraction's rules; a layer's
// entry may also replace a lower layer's entry of another type, .wh.NAME
// whiteouts hide NAME of the lower layers, a .wh..wh..opq marker hides all
// the lower layers' entries of its directory, and neither hides anything
// of its own layer. A parent a lower layer made a symlink is still no
// directory to write through.
func (c *Cache) Image(t ImageTree) (*Ref, error) {
	if _, err := sha256Digest("image digest", t.Digest); err != nil {
		return nil, fmt.Errorf("image %s: %w", t.Name, err)
	}
	for i, l := range t.Layers {
		if _, err := sha256Digest("diff_id", l.DiffID); err != nil {
			return nil, fmt.Errorf("image %s, layer %d: %w", t.Name, i+1, err)
		}
		if l.Open == nil {
			return nil, fmt.Errorf("image %s, layer %d: no Open", t.Name, i+1)
		}
	}
	if t.MaxSize < 0 {
		return nil, fmt.Errorf("image %s: negative size limit %d", t.Name, t.MaxSize)
	}
	if err := c.checkIDMap(); err != nil {
		return nil, err
	}
	readOnly, err := c.init()
	if err != nil {
		return nil, err
	}
	final := c.ImagePath(t.Digest)
	return c.tree(final, t.Digest, "rootfs/image-"+short(strings.TrimPrefix(t.Digest, "sha256:"))+c.mapSuffix(), readOnly, func() error { return c.flattenInto(t, final) })
}

// flattenInto applies t's layers into a temporary sibling of final and
// publishes it as final, durably; on any error, nothing is left.
func (c *Cache) flattenInto(t ImageTree, final string) error {
	op := "flattening image " + t.Name + " into"
	tmp, err := os.MkdirTemp(filepath.Dir(final), ".tmp-"+short(imageKey(t.Digest))+c.mapSuffix()+"-")
	if err != nil {
		return c.writeError(op, unwrapPath(err))
	}
	ok := false
	defer func() {
		if !ok {
			RemoveTree(tmp)
		}
	}()

	start := time.Now()
	limit := t.MaxSize
	if limit == 0 {
		limit = DefaultMaxImageSize
	}
	opts := extractOptions{DropSetID: c.DropSetID, MaxBytes: limit, IDMap: c.IDMap}
	if c.RootOwned {
		opts.Owner = &Owner{UID: 0, GID: 0}
		opts.NoSharedWrite = true
	}
	x := newExtractor(tmp, opts)
	x.layered = true
	x.kids = map[string]map[string]struct{}{}
	x.what = "image"
	for i, l := range t.Layers {
		layer := fmt.Sprintf("image %s, layer %d of %d (%s)", t.Name, i+1, len(t.Layers), short(strings.TrimPrefix(l.DiffID, "sha256:")))
		if err := c.applyLayer(x, l, layer); err != nil {
			var unsafe *UnsafeEntryError
			var read *readError
			var mismatch *DigestMismatchError
			var errno syscall.Errno
			var open *openError
			switch {
			case errors.As(err, &open):
				return fmt.Errorf("opening %s: %w", layer, open.err)
			case errors.Is(err, errTooBig):
				return &ImageSizeError{Name: t.Name, Limit: limit}
			case errors.As(err, &mismatch):
				return err
			case errors.As(err, &unsafe):
				return fmt.Errorf("%s: %w", layer, err)
			case errors.As(err, &read):
				return fmt.Errorf("reading %s: %w (the layer is truncated or corrupt)", layer, err)
			case errors.As(err, &errno):
				// Writing the tree failed: the cache's filesystem is
				// at fault, not the image.
				return c.writeError(op, err)
			default:
				return fmt.Errorf("%s: %w", layer, err)
			}
		}
		c.Log.V(1).Info("image layer applied", "image", t.Name, "layer", i+1, "layers", len(t.Layers), "diffID", l.DiffID)
	}
	x.layered = false
	if err := x.finish(); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return c.writeError(op, err)
		}
		return fmt.Errorf("image %s: %w", t.Name, err)
	}
	if err := c.publish(tmp, final, op); err != nil {
		return err
	}
	ok = true
	c.Log.Info("image flattened", "image", t.Name, "digest", t.Digest, "layers", len(t.Layers),
		"files", x.stats.Files, "bytes", x.stats.Bytes, "skipped", x.stats.Skipped,
		"duration", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// openError is an error of Layer.Open: the layer's source's, never the
// cache's.
type openError struct{ err error }

func (e *openError) Error() string { return e.err.Error() }

func (e *openError) Unwrap() error { return e.err }

// applyLayer applies one layer to x, hashing what it reads: the layer's
// entries are applied as they are read, and a layer whose bytes do not hash
// to its DiffID fails once read, with a *DigestMismatchError named layer.
func (c *Cache) applyLayer(x *extractor, l Layer, layer string) error {
	want, _ := sha256Digest("diff_id", l.DiffID)
	rc, err := l.Open()
	if err != nil {
		return &openError{err}
	}
	defer rc.Close()
	h := sha256.New()
	x.touched = map[string]bool{}
	err = x.apply(io.TeeReader(rc, h), nil)
	var read *readError
	if err != nil && !errors.As(err, &read) {
		return err
	}
	// Hash what the tar reader did not need (the end-of-archive blocks
	// and padding), and, after a read error, the rest of the layer: a
	// layer that is not what its DiffID says is corrupt, which says more
	// than the tar error it caused.
	if _, cerr := io.Copy(h, rc); cerr != nil {
		if err != nil {
			return err
		}
		return &readError{cerr}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return &DigestMismatchError{Name: layer, Expected: want, Actual: got}
	}
	return err
}
