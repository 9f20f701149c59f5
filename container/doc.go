// Package container runs one rootless container with runc: it builds the
// runtime-spec for a worker, writes the bundle (a directory holding only
// config.json, whose root.path points at a shared read-only rootfs), and
// drives the runc binary through go-runc.
//
// Container root is always an unprivileged host uid: the caller's own uid
// when mrtd runs as a normal user, or Options.UID (65534 by default) when it
// runs as root. With Options.IDMaps a container maps more ids (keep-id: the
// host user as container uid 1000, subordinate ids around it, runc run by
// mrtd in a user namespace of its own, Runtime.Rootless) and its command
// runs as Options.User. Nothing here knows about restarts or pools.
//
// A bundle no live process holds locked was left by one that died: Init
// deletes its container; KillStale, for a process that can signal what
// runc no longer can, only kills it.
//
// It imports only reaper (to route runc through it); pool and daemon import
// it, never supervisor, and it never imports supervisor either.
package container
