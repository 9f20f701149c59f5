//go:build tools

// Package runc pins the runc release that mrtd embeds. It holds no code of
// its own: the Makefile builds github.com/opencontainers/runc from the
// version required in go.mod, verified by go.sum, so runc's dependencies
// (runtime-spec among them) never meet the daemon's module graph.
package runc

import _ "github.com/opencontainers/runc"
