package image

import (
	"maps"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ImageConfig is what mrtd applies of an image's config.
type ImageConfig struct {
	// Ref is the image as given; Digest the manifest digest the tree is
	// made from ("sha256:…"; for a docker-archive, which has no manifest,
	// the config digest). ConfigDigest is the config's own.
	Ref, Digest, ConfigDigest string
	// Platform is os/arch[/variant] as the config says.
	Platform string

	Entrypoint, Cmd []string
	// Env is KEY=VALUE, in the image's order.
	Env        []string
	WorkingDir string
	// User is as the image gives it: "", NAME, UID, UID:GID, NAME:GROUP.
	User       string
	StopSignal string
	Labels     map[string]string
	// ExposedPorts ("8080/tcp") and Volumes ("/data") are names only,
	// sorted: mrtd runs in the host's network namespace and mounts only
	// what it is told to.
	ExposedPorts, Volumes []string
	// Healthcheck is the image's HEALTHCHECK; nil when it has none.
	Healthcheck *Healthcheck
}

// Healthcheck is an image's HEALTHCHECK, as Docker's config holds it.
type Healthcheck struct {
	// Test is ["CMD", ARGV...], ["CMD-SHELL", COMMAND] or ["NONE"] (no
	// check, turning off an inherited one); empty inherits, which a
	// flattened config cannot, so it is none.
	Test []string
	// Zero durations and retries mean the defaults.
	Interval, Timeout, StartPeriod time.Duration
	Retries                        int
}

func imageConfig(ref, digest, configDigest string, cf *v1.ConfigFile) ImageConfig {
	c := cf.Config
	ic := ImageConfig{
		Ref:          ref,
		Digest:       digest,
		ConfigDigest: configDigest,
		Platform:     platformString(&v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}),
		Entrypoint:   slices.Clone(c.Entrypoint),
		Cmd:          slices.Clone(c.Cmd),
		Env:          slices.Clone(c.Env),
		WorkingDir:   c.WorkingDir,
		User:         c.User,
		StopSignal:   c.StopSignal,
		Labels:       maps.Clone(c.Labels),
		ExposedPorts: slices.Sorted(maps.Keys(c.ExposedPorts)),
		Volumes:      slices.Sorted(maps.Keys(c.Volumes)),
	}
	if h := c.Healthcheck; h != nil {
		ic.Healthcheck = &Healthcheck{
			Test:     slices.Clone(h.Test),
			Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod,
			Retries: h.Retries,
		}
	}
	return ic
}
