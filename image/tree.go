package image

import (
	"context"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sync/errgroup"
)

// tree is what a Source hands the rootfs cache: rootfs.ImageTree's fields.
type tree struct {
	name, digest string
	layers       []treeLayer
	config       ImageConfig
	// fetch, when set, brings every layer blob into the store: called
	// before an extraction, so that downloads do not run under the rootfs
	// cache's write lock.
	fetch func() error
}

type treeLayer struct {
	// diffID is the uncompressed tar's digest, from the image config.
	diffID string
	// open returns the uncompressed tar, fetching the layer's blob first
	// when the cache lacks it; reading it to its end checks diffID.
	open func() (io.ReadCloser, error)
}

// prepare resolves ref per o.Policy, and returns its tree and a function to
// call once the tree is in use, which records what ref named (a tag's
// resolution, or the reference for listings). Layers
// are fetched only when the rootfs cache opens them: a tree already
// extracted needs none.
func prepare(ctx context.Context, ref Ref, o Options) (*tree, func() error, error) {
	if ref.Kind == DockerArchive {
		a, err := openArchive(ref)
		if err != nil {
			return nil, nil, err
		}
		done := func() error { return nil }
		if o.Dir != "" {
			s := &store{dir: o.Dir}
			done = func() error { return s.note(ref.absolute().String(), a.config.Digest, "") }
		}
		return a.tree(), done, nil
	}
	p, err := newPuller(ref, o)
	if err != nil {
		return nil, nil, err
	}
	img, err := p.resolve(ctx)
	if err != nil {
		return nil, nil, err
	}
	t := &tree{
		name:   ref.String(),
		digest: img.digest.String(),
		config: imageConfig(ref.String(), img.digest.String(), img.configDigest.String(), img.config),
	}
	t.fetch = func() error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(3)
		for i := range img.layers {
			g.Go(func() error { return p.ensureLayer(gctx, img, i) })
		}
		return g.Wait()
	}
	for i, l := range img.layers {
		diffID := img.config.RootFS.DiffIDs[i].String()
		t.layers = append(t.layers, treeLayer{
			diffID: diffID,
			open: func() (io.ReadCloser, error) {
				// rootfs.Source.Open has no context to stop a fetch.
				if err := p.ensureLayer(ctx, img, i); err != nil {
					return nil, err
				}
				f, err := p.store.open(l.Digest)
				if err != nil {
					return nil, err
				}
				rc, err := uncompressed(f)
				if err != nil {
					return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
				}
				return verifyDiffID(rc, l.Digest.String(), diffID), nil
			},
		})
	}
	return t, func() error { return p.record(img) }, nil
}

// archive is a `docker save` tarball.
type archive struct {
	ref    Ref
	img    v1.Image
	config ImageConfig
}

func openArchive(ref Ref) (*archive, error) {
	if _, err := os.Stat(ref.Path); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	img, err := tarball.ImageFromPath(ref.Path, nil)
	if err != nil {
		return nil, fmt.Errorf("%s is not a docker save tarball of one image (%v): give a tarball `docker save IMAGE` wrote", ref, err)
	}
	cd, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", ref, err)
	}
	// No manifest of its own: the config digest, docker's image ID, names
	// the content (through its diff_ids).
	return &archive{ref: ref, img: img, config: imageConfig(ref.String(), cd.String(), cd.String(), cf)}, nil
}

func (a *archive) tree() *tree {
	t := &tree{name: a.ref.String(), digest: a.config.Digest, config: a.config}
	cf, _ := a.img.ConfigFile()
	for _, diffID := range cf.RootFS.DiffIDs {
		t.layers = append(t.layers, treeLayer{
			diffID: diffID.String(),
			open: func() (io.ReadCloser, error) {
				l, err := a.img.LayerByDiffID(diffID)
				if err != nil {
					return nil, fmt.Errorf("%s: layer %s: %w", a.ref, diffID, err)
				}
				rc, err := l.Uncompressed()
				if err != nil {
					return nil, fmt.Errorf("%s: layer %s: %w", a.ref, diffID, err)
				}
				return verifyDiffID(rc, diffID.String(), diffID.String()), nil
			},
		})
	}
	return t
}
