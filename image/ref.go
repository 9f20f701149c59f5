package image

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Kind says where an image is read from.
type Kind int

const (
	// Registry is an image in a registry: host/repo:tag or @sha256:.
	Registry Kind = iota
	// OCILayout is an OCI image layout directory on disk.
	OCILayout
	// DockerArchive is a tarball written by `docker save`.
	DockerArchive
)

const (
	ociPrefix     = "oci:"
	archivePrefix = "docker-archive:"
	usage         = "give [REGISTRY/]REPOSITORY[:TAG], [REGISTRY/]REPOSITORY@sha256:DIGEST, oci:PATH[:TAG] or docker-archive:PATH"
)

// Ref is a parsed image reference.
type Ref struct {
	Kind Kind
	// Name is a Registry reference, fully qualified:
	// docker.io/library/debian:bookworm, host:port/repo@sha256:<hex>, or
	// both a tag and a digest (the digest wins).
	Name string
	// Path is an OCILayout's directory or a DockerArchive's file.
	Path string
	// Tag chooses an image of an OCILayout by its
	// org.opencontainers.image.ref.name annotation; empty means the
	// layout's only image.
	Tag string
}

// Parse reads an image reference: a registry's ([REGISTRY/]REPO[:TAG] or
// [REGISTRY/]REPO@sha256:DIGEST, Docker's rules: an unqualified name is on
// docker.io, a single-segment one under docker.io/library/, the default tag
// is latest), oci:PATH[:TAG] or docker-archive:PATH. A registry named "oci"
// or "docker-archive" must be given with its domain.
func Parse(s string) (Ref, error) {
	switch {
	case strings.TrimSpace(s) == "":
		return Ref{}, fmt.Errorf("empty image reference: %s", usage)
	case strings.HasPrefix(s, ociPrefix):
		p, tag := strings.TrimPrefix(s, ociPrefix), ""
		// The tag is after the last colon, unless that colon belongs to
		// the path (a slash follows it).
		if i := strings.LastIndexByte(p, ':'); i >= 0 && !strings.Contains(p[i+1:], "/") {
			p, tag = p[:i], p[i+1:]
			if tag == "" {
				return Ref{}, fmt.Errorf("image reference %q has an empty tag: give oci:PATH or oci:PATH:TAG", s)
			}
		}
		if p == "" {
			return Ref{}, fmt.Errorf("image reference %q names no directory: give oci:PATH[:TAG]", s)
		}
		return Ref{Kind: OCILayout, Path: filepath.Clean(p), Tag: tag}, nil
	case strings.HasPrefix(s, archivePrefix):
		p := strings.TrimPrefix(s, archivePrefix)
		if p == "" {
			return Ref{}, fmt.Errorf("image reference %q names no file: give docker-archive:PATH", s)
		}
		return Ref{Kind: DockerArchive, Path: filepath.Clean(p)}, nil
	}
	// A tag given with a digest is kept for people to read; the digest
	// decides.
	in, tag := s, ""
	if before, d, ok := strings.Cut(s, "@"); ok {
		if i := strings.LastIndexByte(before, ':'); i > strings.LastIndexByte(before, '/') {
			in, tag = before[:i]+"@"+d, before[i+1:]
		}
	}
	r, err := name.ParseReference(in)
	if err == nil && tag != "" {
		_, err = name.NewTag(r.Context().String() + ":" + tag)
	}
	if err != nil {
		return Ref{}, fmt.Errorf("invalid image reference %q (%v): %s, in lowercase", s, err, usage)
	}
	if d, ok := r.(name.Digest); ok && !strings.HasPrefix(d.DigestStr(), "sha256:") {
		return Ref{}, fmt.Errorf("image reference %q: only sha256 digests are supported: give @sha256:DIGEST", s)
	}
	return Ref{Kind: Registry, Name: canonical(r, tag)}, nil
}

// canonical spells a registry reference in full, with Docker Hub as
// docker.io (go-containerregistry calls it index.docker.io); tag is one
// given with a digest.
func canonical(r name.Reference, tag string) string {
	repo := r.Context()
	reg := repo.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	s := reg + "/" + repo.RepositoryStr()
	switch r := r.(type) {
	case name.Tag:
		s += ":" + r.TagStr()
	case name.Digest:
		if tag != "" {
			s += ":" + tag
		}
		s += "@" + r.DigestStr()
	}
	return s
}

// String is the reference as Parse reads it back.
func (r Ref) String() string {
	switch r.Kind {
	case OCILayout:
		if r.Tag != "" {
			return ociPrefix + r.Path + ":" + r.Tag
		}
		return ociPrefix + r.Path
	case DockerArchive:
		return archivePrefix + r.Path
	}
	return r.Name
}

// absolute is r with an OCI layout's or a docker-archive's path made
// absolute, so that it names the same image from any directory.
func (r Ref) absolute() Ref {
	if r.Kind == Registry {
		return r
	}
	if p, err := filepath.Abs(r.Path); err == nil {
		r.Path = p
	}
	return r
}

// Digest is the @sha256: digest a Registry reference pins, or "".
func (r Ref) Digest() string {
	if r.Kind != Registry {
		return ""
	}
	if _, d, ok := strings.Cut(r.Name, "@"); ok {
		return d
	}
	return ""
}

// reference is the Registry reference for go-containerregistry; insecure
// allows plain HTTP.
func (r Ref) reference(insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	s := r.Name
	if before, d, ok := strings.Cut(s, "@"); ok {
		// By digest only: the tag would be ignored anyway.
		if i := strings.LastIndexByte(before, '/'); i >= 0 {
			if j := strings.LastIndexByte(before[i:], ':'); j >= 0 {
				before = before[:i+j]
			}
		}
		s = before + "@" + d
	}
	return name.ParseReference(s, opts...)
}
