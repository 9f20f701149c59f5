package mrtdtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The registry and skopeo helpers of registry.go without a *testing.T, for
// the tools (bench): errors are returned, and what they create lives under
// a directory the caller gives and removes.

// StartRegistryIn starts a registry with its configuration and storage
// under dir; the caller stops it (Stop). A port taken between choosing it
// and the registry's bind is retried.
func StartRegistryIn(dir string) (*Registry, error) {
	if _, err := os.Stat(RegistryBin); err != nil {
		return nil, err
	}
	var err error
	for range 3 {
		var r *Registry
		if r, err = startRegistry(dir); err == nil {
			return r, nil
		}
	}
	return nil, fmt.Errorf("starting docker-registry: %w", err)
}

// WritePolicy writes a skopeo signature policy accepting every image into
// dir and returns its path, for RunSkopeo's --policy.
func WritePolicy(dir string) (string, error) {
	p := filepath.Join(dir, "policy.json")
	return p, os.WriteFile(p, []byte(insecurePolicy), 0o644)
}

// RunSkopeo runs skopeo with args, for two minutes at most, and returns its
// stdout; the error of a failure carries its stderr.
func RunSkopeo(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, skopeoTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, SkopeoBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("skopeo %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// PushImage copies the image src (a skopeo transport:reference, such as
// oci:DIR:1) to repoTag in the registry, with skopeo's extra flags; policy
// is a file WritePolicy wrote.
func (r *Registry) PushImage(ctx context.Context, policy, src, repoTag string, flags ...string) error {
	args := append([]string{"--policy", policy, "copy", "--quiet", "--dest-tls-verify=false"}, flags...)
	_, err := RunSkopeo(ctx, append(args, src, "docker://"+r.Ref(repoTag))...)
	return err
}
