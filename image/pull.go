package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// ErrNotCached is wrapped by the errors of pull policy never when the
// cache lacks the image.
var ErrNotCached = errors.New("not in the image cache")

// NotCachedError reports an image, or a blob of it, that pull policy never
// does not find in the cache.
type NotCachedError struct {
	Ref string
	// Digest is the blob missing, or "" when the reference was never
	// resolved.
	Digest string
}

func (e *NotCachedError) Error() string {
	what := "is not in the image cache"
	if e.Digest != "" {
		what = "is not complete in the image cache (it lacks " + e.Digest + ")"
	}
	return fmt.Sprintf("image %s %s and the pull policy is never: run mrtd pull %s", e.Ref, what, e.Ref)
}

func (e *NotCachedError) Unwrap() error { return ErrNotCached }

// Pull fetches the image ref names into the blob cache, asking the
// registry what a tag names now, and records the tag; it returns the
// manifest digest of the image for Options.Platform. An OCI layout's blobs
// are copied into the cache; a docker-archive is only read, and its config
// digest returned.
func Pull(ctx context.Context, ref Ref, o Options) (string, error) {
	if ref.Kind == DockerArchive {
		a, err := openArchive(ref)
		if err != nil {
			return "", err
		}
		return a.config.Digest, nil
	}
	o.Policy = PullAlways
	p, err := newPuller(ref, o)
	if err != nil {
		return "", err
	}
	p.explicit = true
	img, err := p.resolve(ctx)
	if err != nil {
		return "", err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(3)
	for i := range img.layers {
		g.Go(func() error { return p.ensureLayer(gctx, img, i) })
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	if err := p.record(img); err != nil {
		return "", err
	}
	p.log.Info("image pulled", "image", ref.String(), "digest", img.digest.String())
	return img.digest.String(), nil
}

// puller resolves one reference per the pull policy, into the blob store.
type puller struct {
	ref    Ref
	opts   Options
	policy Policy
	store  *store
	local  bool
	// origin is made when first needed: a start from the cache makes none.
	newOrigin func() (origin, error)
	origin    origin
	mu        sync.Mutex // serializes Progress calls and guards origin
	log       logr.Logger
	// explicit is set for Pull, whose errors need not say the policy.
	explicit bool
}

func newPuller(ref Ref, o Options) (*puller, error) {
	if o.Dir == "" {
		return nil, errors.New("image: Options.Dir is empty")
	}
	p := &puller{ref: ref, opts: o, policy: o.Policy.orDefault(), store: &store{dir: o.Dir}, log: o.Log}
	switch ref.Kind {
	case Registry:
		p.newOrigin = func() (origin, error) { return newRegistryOrigin(ref, o) }
	case OCILayout:
		l, err := newLayout(ref)
		if err != nil {
			return nil, err
		}
		p.local = true
		p.origin = l
	default:
		return nil, fmt.Errorf("image: %s cannot be pulled", ref)
	}
	if _, err := platform(o.Platform); err != nil {
		return nil, err
	}
	p.store.removeTemps()
	return p, nil
}

func (p *puller) getOrigin() (origin, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.origin == nil {
		o, err := p.newOrigin()
		if err != nil {
			return nil, err
		}
		p.origin = o
	}
	return p.origin, nil
}

// mayFetch returns nil when the policy lets the puller fetch what the
// cache lacks (digest, or "" for the reference itself).
func (p *puller) mayFetch(digest string) error {
	if p.policy == PullNever && !p.local {
		return &NotCachedError{Ref: p.ref.String(), Digest: digest}
	}
	return nil
}

// resolvedImage is an image whose manifest and config are in the store.
type resolvedImage struct {
	// top is what the reference named (an index or the manifest).
	top          v1.Descriptor
	digest       v1.Hash // the manifest's
	layers       []v1.Descriptor
	config       *v1.ConfigFile
	configDigest v1.Hash
}

// resolve finds the image's manifest and config, in the store when the
// policy allows and they are there, else from the origin.
func (p *puller) resolve(ctx context.Context) (*resolvedImage, error) {
	top, raw, err := p.resolveTop(ctx)
	if err != nil {
		return nil, err
	}
	want, err := platform(p.opts.Platform)
	if err != nil {
		return nil, err
	}
	d := top
	for depth := 0; ; depth++ {
		m, err := parseManifest(raw)
		if err != nil {
			return nil, fmt.Errorf("image %s: manifest %s: %w", p.ref, d.Digest, err)
		}
		if m.index == nil {
			img, err := p.resolveConfig(ctx, m.manifest)
			if err != nil {
				return nil, err
			}
			img.top, img.digest = top, d.Digest
			return img, nil
		}
		if depth == 2 {
			return nil, fmt.Errorf("image %s: indexes nested too deep", p.ref)
		}
		if d, err = choose(p.ref.String(), m.index, want); err != nil {
			return nil, err
		}
		if raw, err = p.fetchManifest(ctx, d); err != nil {
			return nil, err
		}
	}
}

// resolveTop returns what the reference names, and its bytes.
func (p *puller) resolveTop(ctx context.Context) (v1.Descriptor, []byte, error) {
	if p.local {
		d, raw, err := p.origin.top(ctx)
		if err != nil {
			return v1.Descriptor{}, nil, err
		}
		if err := p.store.putBytes("manifest", d.Digest, raw); err != nil {
			return v1.Descriptor{}, nil, err
		}
		return d, raw, nil
	}
	if dg := p.ref.Digest(); dg != "" {
		h, err := v1.NewHash(dg)
		if err != nil {
			return v1.Descriptor{}, nil, err
		}
		d := v1.Descriptor{Digest: h, Size: -1}
		raw, err := p.fetchManifest(ctx, d)
		return d, raw, err
	}
	if p.policy != PullAlways {
		rec, err := p.store.lookup(p.ref.Name)
		if err != nil {
			return v1.Descriptor{}, nil, err
		}
		if rec != nil {
			h, _ := v1.NewHash(rec.Digest)
			if raw, err := p.store.read(h); err == nil {
				return v1.Descriptor{Digest: h, Size: int64(len(raw)), MediaType: types.MediaType(rec.MediaType)}, raw, nil
			}
		}
	}
	if err := p.mayFetch(""); err != nil {
		return v1.Descriptor{}, nil, err
	}
	o, err := p.getOrigin()
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	d, raw, err := o.top(ctx)
	if err != nil {
		if p.policy == PullAlways && !p.explicit {
			return v1.Descriptor{}, nil, fmt.Errorf("pull policy always: %w", err)
		}
		return v1.Descriptor{}, nil, err
	}
	// go-containerregistry hashed the bytes itself; the store checks it.
	if err := p.store.putBytes("manifest", d.Digest, raw); err != nil {
		return v1.Descriptor{}, nil, err
	}
	return d, raw, nil
}

// fetchManifest returns the manifest or index d names, from the store or
// else the origin.
func (p *puller) fetchManifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	if raw, err := p.store.read(d.Digest); err == nil {
		return raw, nil
	}
	if err := p.mayFetch(d.Digest.String()); err != nil {
		return nil, err
	}
	o, err := p.getOrigin()
	if err != nil {
		return nil, err
	}
	raw, err := o.manifest(ctx, d)
	if err != nil {
		return nil, err
	}
	if err := p.store.put("manifest", d.Digest, d.Size, bytes.NewReader(raw), nil); err != nil {
		return nil, err
	}
	return raw, nil
}

// resolveConfig fetches the config m names and checks it against m.
func (p *puller) resolveConfig(ctx context.Context, m *v1.Manifest) (*resolvedImage, error) {
	switch m.Config.MediaType {
	case types.DockerConfigJSON, types.OCIConfigJSON:
	default:
		return nil, fmt.Errorf("%s is not a container image (its config is %q): give an image's reference", p.ref, m.Config.MediaType)
	}
	for _, l := range m.Layers {
		if l.MediaType == types.DockerForeignLayer {
			return nil, fmt.Errorf("%s has foreign (Windows) layers: give a Linux image", p.ref)
		}
	}
	if err := p.ensure(ctx, "config", -1, m.Config); err != nil {
		return nil, err
	}
	raw, err := p.store.read(m.Config.Digest)
	if err != nil {
		return nil, err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("image %s: config %s: %w", p.ref, m.Config.Digest, err)
	}
	if n, l := len(cf.RootFS.DiffIDs), len(m.Layers); n != l {
		return nil, fmt.Errorf("image %s is malformed: its config lists %d layers, its manifest %d", p.ref, n, l)
	}
	return &resolvedImage{layers: m.Layers, config: cf, configDigest: m.Config.Digest}, nil
}

// ensureLayer makes sure layer i of img is in the store.
func (p *puller) ensureLayer(ctx context.Context, img *resolvedImage, i int) error {
	return p.ensure(ctx, "layer", i, img.layers[i])
}

// ensure makes sure the blob d is in the store; layer is its index among
// the layers, -1 for a config.
func (p *puller) ensure(ctx context.Context, what string, layer int, d v1.Descriptor) error {
	report := func(done int64, cached bool) {
		if p.opts.Progress == nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.opts.Progress(Progress{Ref: p.ref.String(), Digest: d.Digest.String(), Layer: layer, Size: d.Size, Done: done, Cached: cached})
	}
	if p.store.has(d.Digest, d.Size) {
		report(d.Size, true)
		return nil
	}
	if err := p.mayFetch(d.Digest.String()); err != nil {
		return err
	}
	o, err := p.getOrigin()
	if err != nil {
		return err
	}
	report(0, false)
	start := time.Now()
	rc, err := o.blob(ctx, d)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, d.Digest, err)
	}
	defer rc.Close()
	if err := p.store.put(what, d.Digest, d.Size, rc, func(n int64) { report(n, false) }); err != nil {
		return err
	}
	if what == "layer" {
		p.log.Info("layer fetched", "image", p.ref.String(), "digest", d.Digest.String(), "bytes", d.Size,
			"duration", time.Since(start).Round(time.Millisecond).String())
	}
	return nil
}

// record notes what the reference named, once its image is complete: a
// tag's resolution, which later starts use, or a digest reference or an OCI
// layout, which only listings show.
func (p *puller) record(img *resolvedImage) error {
	if p.local || p.ref.Digest() != "" {
		return p.store.note(p.ref.absolute().String(), img.top.Digest.String(), string(img.top.MediaType))
	}
	if rec, _ := p.store.lookup(p.ref.Name); rec != nil && rec.Digest == img.top.Digest.String() {
		return nil
	}
	return p.store.save(record{Name: p.ref.Name, Digest: img.top.Digest.String(), MediaType: string(img.top.MediaType), Resolved: time.Now().UTC()})
}

// manifestOrIndex is a parsed manifest: one of the two is set.
type manifestOrIndex struct {
	manifest *v1.Manifest
	index    *v1.IndexManifest
}

func parseManifest(raw []byte) (manifestOrIndex, error) {
	var probe struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Layers        json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return manifestOrIndex{}, err
	}
	switch {
	case probe.SchemaVersion == 1:
		return manifestOrIndex{}, errors.New("Docker schema 1 manifests are not supported: push the image again with a current client")
	case probe.MediaType == types.DockerManifestList, probe.MediaType == types.OCIImageIndex,
		probe.MediaType == "" && probe.Manifests != nil:
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		return manifestOrIndex{index: idx}, err
	case probe.MediaType == types.DockerManifestSchema2, probe.MediaType == types.OCIManifestSchema1,
		probe.MediaType == "" && probe.Layers != nil:
		m, err := v1.ParseManifest(bytes.NewReader(raw))
		return manifestOrIndex{manifest: m}, err
	}
	return manifestOrIndex{}, fmt.Errorf("unsupported manifest type %q", probe.MediaType)
}
