package image

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// PlatformError reports a multi-platform image without an image for the
// platform wanted.
type PlatformError struct {
	Ref  string
	Want string
	// Have are the platforms the index has, os/arch[/variant].
	Have []string
}

func (e *PlatformError) Error() string {
	return fmt.Sprintf("image %s has no image for platform %s: choose one of those it has: %s",
		e.Ref, e.Want, strings.Join(e.Have, ", "))
}

// platform is the platform to choose: os/arch[/variant], or this host's.
func platform(s string) (v1.Platform, error) {
	if s == "" {
		return hostPlatform(), nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
		return v1.Platform{}, fmt.Errorf("platform %q: use os/arch or os/arch/variant, such as linux/amd64 or linux/arm64/v8", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// hostPlatform is the platform this binary runs on; the variant, for arm,
// is the one it was built for.
func hostPlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	switch runtime.GOARCH {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = "v7"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "GOARM" && s.Value != "" {
					p.Variant = "v" + strings.SplitN(s.Value, ",", 2)[0]
				}
			}
		}
	}
	return p
}

func platformString(p *v1.Platform) string {
	if p == nil {
		return "unknown"
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// variants are the variants an image may have to run on a platform with
// variant want, best first: "" (none said) last. An arm v7 runs v6 and v5
// code too.
func variants(arch, want string) []string {
	switch {
	case arch == "arm64" && (want == "v8" || want == ""):
		return []string{"v8", ""}
	case arch == "arm" && len(want) == 2 && want[0] == 'v' && want[1] >= '5' && want[1] <= '8':
		var vs []string
		for v := want[1]; v >= '5'; v-- {
			vs = append(vs, "v"+string(v))
		}
		return append(vs, "")
	case want == "":
		return nil // any
	}
	return []string{want, ""}
}

// choose returns the manifest of idx for platform want, or a
// *PlatformError listing those idx has.
func choose(ref string, idx *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	vs := variants(want.Architecture, want.Variant)
	best, bestRank := -1, len(vs)+1
	for i, m := range idx.Manifests {
		p := m.Platform
		if p == nil || p.OS != want.OS || p.Architecture != want.Architecture {
			continue
		}
		rank := 0
		if vs != nil {
			if rank = slices.Index(vs, p.Variant); rank < 0 {
				continue
			}
		}
		if rank < bestRank {
			best, bestRank = i, rank
		}
	}
	if best >= 0 {
		return idx.Manifests[best], nil
	}
	var have []string
	for _, m := range idx.Manifests {
		// Attestations and signatures are not images to run.
		if m.Platform == nil || m.Platform.OS == "unknown" {
			continue
		}
		if s := platformString(m.Platform); !slices.Contains(have, s) {
			have = append(have, s)
		}
	}
	return v1.Descriptor{}, &PlatformError{Ref: ref, Want: platformString(&want), Have: have}
}
