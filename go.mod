module github.com/mrt-project/mrt

go 1.26.0

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/containerd/go-runc v1.2.1
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/go-logr/logr v1.4.4
	github.com/go-logr/zapr v1.3.0
	github.com/klauspost/compress v1.20.4
	github.com/moby/profiles/seccomp v0.3.0
	github.com/opencontainers/runtime-spec v1.3.0
	go.uber.org/zap v1.28.0
	golang.org/x/sync v0.25.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/containerd/console v1.0.5 // indirect
	go.uber.org/multierr v1.10.0 // indirect
)
