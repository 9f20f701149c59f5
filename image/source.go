package image

import (
	"context"
	"os"

	"github.com/mrt-project/mrt/rootfs"
)

// Source is an image as a rootfs.Source: Open pulls it per the pull
// policy and has the rootfs cache flatten its layers into a tree keyed by
// its manifest digest.
type Source struct {
	ref    Ref
	opts   Options
	config ImageConfig
	// opened is what the first successful Open resolved: a second Open
	// (the tree through an id map) resolves and records nothing again.
	opened *tree
}

// NewSource returns the image ref names, cached and fetched as o says.
func NewSource(ref Ref, o Options) *Source {
	return &Source{ref: ref, opts: o}
}

// Open resolves the image (without the network when the policy and the
// cache allow), then returns its tree, extracted into c first when it must
// be; only then are the layers the cache lacks fetched. Once an Open has
// succeeded, the next ones use the image it resolved.
func (s *Source) Open(c *rootfs.Cache) (*rootfs.Ref, error) {
	t, done := s.opened, func() error { return nil }
	if t == nil {
		// rootfs.Source has no context: a fetch is bounded by the
		// registry client's own timeouts.
		var err error
		if t, done, err = prepare(context.Background(), s.ref, s.opts); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(c.ImagePath(t.digest)); err != nil && t.fetch != nil {
		// Not extracted yet: download first, then extract under the
		// cache's lock, which the download need not hold.
		if err := t.fetch(); err != nil {
			return nil, err
		}
	}
	it := rootfs.ImageTree{Name: t.name, Digest: t.digest, MaxSize: s.opts.MaxSize}
	for _, l := range t.layers {
		it.Layers = append(it.Layers, rootfs.Layer{DiffID: l.diffID, Open: l.open})
	}
	ref, err := c.Image(it)
	if err != nil {
		return nil, err
	}
	if err := done(); err != nil {
		// The tree is there; only the next start's shortcut is lost.
		s.opts.Log.Error(err, "recording the image's tag", "image", s.ref.String())
	}
	s.config = t.config
	s.opened = t
	return ref, nil
}

// String is the reference as given.
func (s *Source) String() string { return s.ref.String() }

// Config is the image config, valid after a successful Open.
func (s *Source) Config() ImageConfig { return s.config }
