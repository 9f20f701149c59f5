package image

import (
	"fmt"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
)

// Policy says when a registry is asked for an image, as Podman's --pull.
type Policy string

const (
	// PullMissing uses the cached image when there is one (a tag resolved
	// once is not resolved again) and fetches it otherwise. The zero
	// Policy means PullMissing.
	PullMissing Policy = "missing"
	// PullAlways resolves the reference in the registry at every start, and
	// fails when the registry cannot be reached.
	PullAlways Policy = "always"
	// PullNever uses the cache only.
	PullNever Policy = "never"
)

// ParsePolicy reads missing, always or never.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PullMissing, PullAlways, PullNever:
		return p, nil
	case "":
		return PullMissing, nil
	}
	return "", fmt.Errorf("unknown pull policy %q: use missing, always or never", s)
}

func (p Policy) orDefault() Policy {
	if p == "" {
		return PullMissing
	}
	return p
}

// Options says where images are cached and how registries are reached.
type Options struct {
	// Dir is the blob cache's directory (mrtd's is <cache-dir>/images).
	Dir string
	// Policy is the pull policy of a Source; Pull always asks the
	// registry.
	Policy Policy
	// Platform chooses an image of a multi-platform index:
	// os/arch[/variant]. Empty means this host's.
	Platform string
	// Insecure allows registries over plain HTTP, and with TLS
	// certificates that do not verify.
	Insecure bool
	// MaxSize bounds the size of the extracted tree, against
	// decompression bombs; 0 is the rootfs cache's default.
	MaxSize int64
	// AuthFile, when set, is the Podman-style auth file read first for
	// registry credentials, in place of $REGISTRY_AUTH_FILE (--authfile;
	// see AuthFiles).
	AuthFile string
	// Keychain finds registry credentials; nil means Keychain(), with
	// AuthFile.
	Keychain authn.Keychain
	// Progress, when set, is told how each blob's download goes. Calls
	// are serialized.
	Progress func(Progress)
	Log      logr.Logger
}

// Progress is how the download of one blob of an image goes.
type Progress struct {
	// Ref is the image.
	Ref string
	// Digest names the blob; Layer is its index among the image's layers,
	// -1 for the config or a manifest.
	Digest string
	Layer  int
	// Size is the blob's length; Done the bytes written so far. Done ==
	// Size once the blob is complete.
	Size, Done int64
	// Cached is set when the blob was in the cache already.
	Cached bool
}
