package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// origin is where an image's manifests and blobs come from: a registry or
// an OCI layout. What it returns is unverified: the blob store verifies.
type origin interface {
	// top returns what the reference names: an index or a manifest.
	top(ctx context.Context) (v1.Descriptor, []byte, error)
	// manifest returns the manifest or index d names.
	manifest(ctx context.Context, d v1.Descriptor) ([]byte, error)
	// blob streams the blob d names.
	blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error)
}

// AuthError reports a registry that refused access: it wants credentials,
// or refused those it was given.
type AuthError struct {
	// Host is the registry, as `mrtd login` takes it.
	Host string
	// Status is the HTTP status: 401 or 403.
	Status int
	Err    error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("registry %s refused access (%d %s): run mrtd login %s",
		e.Host, e.Status, http.StatusText(e.Status), e.Host)
}

func (e *AuthError) Unwrap() error { return e.Err }

// RegistryError is any other failure to talk to a registry, on one line.
type RegistryError struct {
	Host string
	// Unreachable is set when no HTTP answer came.
	Unreachable bool
	Err         error
}

func (e *RegistryError) Error() string {
	msg := strings.Join(strings.Fields(e.Err.Error()), " ")
	if e.Unreachable {
		return fmt.Sprintf("cannot reach registry %s: %s", e.Host, msg)
	}
	return fmt.Sprintf("registry %s: %s", e.Host, msg)
}

func (e *RegistryError) Unwrap() error { return e.Err }

// registryOrigin is an image in a registry.
type registryOrigin struct {
	ref    Ref
	name   name.Reference
	host   string
	certs  *clientCerts
	puller *remote.Puller
	opts   []remote.Option
}

func newRegistryOrigin(ref Ref, o Options) (*registryOrigin, error) {
	n, err := ref.reference(o.Insecure)
	if err != nil {
		return nil, err
	}
	kc := o.Keychain
	if kc == nil {
		kc = keychain(o.AuthFile)
	}
	host, _, _ := strings.Cut(ref.Name, "/")
	t, certs, err := registryTransport(host, o.Insecure)
	if err != nil {
		return nil, err
	}
	opts := []remote.Option{remote.WithAuthFromKeychain(kc), remote.WithUserAgent("mrtd"), remote.WithTransport(t)}
	p, err := remote.NewPuller(opts...)
	if err != nil {
		return nil, err
	}
	return &registryOrigin{ref: ref, name: n, host: host, certs: certs, puller: p, opts: opts}, nil
}

func (r *registryOrigin) top(ctx context.Context) (v1.Descriptor, []byte, error) {
	d, err := r.puller.Get(ctx, r.name)
	if err != nil {
		return v1.Descriptor{}, nil, r.explain(ctx, err)
	}
	return d.Descriptor, d.Manifest, nil
}

func (r *registryOrigin) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	md, err := r.puller.Get(ctx, r.name.Context().Digest(d.Digest.String()))
	if err != nil {
		return nil, r.explain(ctx, err)
	}
	return md.Manifest, nil
}

func (r *registryOrigin) blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	l, err := r.puller.Layer(ctx, r.name.Context().Digest(d.Digest.String()))
	if err != nil {
		return nil, r.explain(ctx, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, r.explain(ctx, err)
	}
	return rc, nil
}

// explain words a registry's error so that a person can act on it.
func (r *registryOrigin) explain(ctx context.Context, err error) error {
	if ce := tlsError(r.host, err, r.certs); ce != nil {
		return ce
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return &AuthError{Host: r.host, Status: te.StatusCode, Err: err}
		case http.StatusNotFound:
			if t, ok := r.name.(name.Tag); ok {
				return r.unknownTag(ctx, t, err)
			}
		}
	}
	var ue *url.Error
	return &RegistryError{Host: r.host, Unreachable: te == nil && errors.As(err, &ue), Err: err}
}

// unknownTag reports a tag the registry does not have, with those it has
// when it says.
func (r *registryOrigin) unknownTag(ctx context.Context, t name.Tag, err error) error {
	tags, lerr := remote.List(t.Context(), append(slices.Clone(r.opts), remote.WithContext(ctx))...)
	if lerr != nil || len(tags) == 0 {
		return fmt.Errorf("registry %s has no image %s (%s): check the repository and tag", r.host, r.ref.Name, strings.Join(strings.Fields(err.Error()), " "))
	}
	const most = 20
	more := ""
	if len(tags) > most {
		more = fmt.Sprintf(" and %d more", len(tags)-most)
		tags = tags[len(tags)-most:]
	}
	return fmt.Errorf("registry %s has no tag %s in %s: use one it has: %s%s",
		r.host, t.TagStr(), t.Context().RepositoryStr(), strings.Join(tags, ", "), more)
}

// ociLayout is an image in an OCI image layout.
type ociLayout struct {
	ref  Ref
	path layout.Path
}

const refNameAnnotation = "org.opencontainers.image.ref.name"

func newLayout(ref Ref) (*ociLayout, error) {
	if _, err := os.Stat(ref.Path); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	p, err := layout.FromPath(ref.Path)
	if err != nil {
		return nil, fmt.Errorf("%s is not an OCI image layout (%v): give the directory skopeo, buildah or `docker buildx --output type=oci` wrote", ref, err)
	}
	return &ociLayout{ref: ref, path: p}, nil
}

func (l *ociLayout) top(context.Context) (v1.Descriptor, []byte, error) {
	idx, err := l.path.ImageIndex()
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("%s: %w", l.ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("%s: index.json: %w", l.ref, err)
	}
	var found []v1.Descriptor
	var names []string
	for _, m := range im.Manifests {
		n := m.Annotations[refNameAnnotation]
		if n != "" {
			names = append(names, n)
		}
		if l.ref.Tag == "" || n == l.ref.Tag {
			found = append(found, m)
		}
	}
	switch {
	case len(found) == 1:
	case l.ref.Tag != "" && len(found) == 0:
		return v1.Descriptor{}, nil, fmt.Errorf("%s: the layout has no image tagged %s: use one it has: %s", l.ref, l.ref.Tag, strings.Join(names, ", "))
	case l.ref.Tag == "" && len(found) == 0:
		return v1.Descriptor{}, nil, fmt.Errorf("%s: the layout holds no image", l.ref)
	default:
		return v1.Descriptor{}, nil, fmt.Errorf("%s: the layout holds %d images: name one, oci:%s:TAG, of %s", l.ref, len(found), l.ref.Path, strings.Join(names, ", "))
	}
	data, err := l.path.Bytes(found[0].Digest)
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("%s: %w", l.ref, err)
	}
	return found[0], data, nil
}

func (l *ociLayout) manifest(_ context.Context, d v1.Descriptor) ([]byte, error) {
	data, err := l.path.Bytes(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.ref, err)
	}
	return data, nil
}

func (l *ociLayout) blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	rc, err := l.path.Blob(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.ref, err)
	}
	return rc, nil
}
