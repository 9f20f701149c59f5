// Package container runs one rootless container with runc: it builds the
// runtime-spec for a worker, writes the bundle (a directory holding only
// config.json, whose root.path points at a shared read-only rootfs), and
// drives the runc binary through go-runc.
//
// Container root is always an unprivileged host uid: the caller's own uid
// when mrtd runs as a normal user, or Options.UID (65534 by default) when it
// runs as root. Nothing here knows about restarts or pools.
//
// It imports only reaper (to route runc through it); pool and daemon import
// it, never supervisor, and it never imports supervisor either.
package container
