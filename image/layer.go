package image

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// DiffIDError reports a layer whose uncompressed content is not what the
// image config's rootfs.diff_ids says.
type DiffIDError struct {
	// Layer is the layer's (compressed) digest, DiffID the config's.
	Layer, DiffID, Actual string
}

func (e *DiffIDError) Error() string {
	return fmt.Sprintf("layer %s: its content hashes to %s, not the diff_id %s its image config gives: the image is corrupt", e.Layer, e.Actual, e.DiffID)
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// uncompressed returns the tar stream of a layer blob: gzip, zstd or plain
// tar, told apart by their magic numbers as media types lie.
func uncompressed(rc io.ReadCloser) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(rc, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		rc.Close()
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, err
		}
		return &readCloser{Reader: zr, close: func() error { zr.Close(); return rc.Close() }}, nil
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			rc.Close()
			return nil, err
		}
		return &readCloser{Reader: zr, close: func() error { zr.Close(); return rc.Close() }}, nil
	}
	return &readCloser{Reader: br, close: rc.Close}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }

// verifyDiffID checks, as rc is read to its end, that the content hashes
// to diffID: the last Read returns a *DiffIDError instead of io.EOF when
// it does not. Close drains up to a MiB that the reader left (a tar
// stream's padding) to check it; a layer left with more unread is not
// checked.
func verifyDiffID(rc io.ReadCloser, layer, diffID string) io.ReadCloser {
	return &diffIDReader{rc: rc, h: sha256.New(), layer: layer, diffID: diffID}
}

type diffIDReader struct {
	rc            io.ReadCloser
	h             hash.Hash
	layer, diffID string
	done          bool
	err           error
}

func (d *diffIDReader) Read(p []byte) (int, error) {
	if d.done {
		return 0, d.err
	}
	n, err := d.rc.Read(p)
	d.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		d.done, d.err = true, io.EOF
		if got := "sha256:" + hex.EncodeToString(d.h.Sum(nil)); got != d.diffID {
			d.err = &DiffIDError{Layer: d.layer, DiffID: d.diffID, Actual: got}
		}
		err = d.err
	}
	return n, err
}

func (d *diffIDReader) Close() error {
	if !d.done {
		if _, err := io.Copy(io.Discard, io.LimitReader(d, 1<<20)); err != nil {
			d.rc.Close()
			return err
		}
	}
	cerr := d.rc.Close()
	var de *DiffIDError
	if errors.As(d.err, &de) {
		return d.err
	}
	return cerr
}
