// Package daemon is mrtd's pool daemon: Run takes the instance (a lock file
// and an abstract socket), prepares runc and the rootfs, checks the workers'
// container against them, and runs the pool until it is told to stop, with
// the control socket, the metrics, systemd's notify protocol and watchdog,
// reload on SIGHUP and a watch on the runtime dir. RunOne is mrtd run's
// entry point: one container in the foreground.
//
// Imports point down: cmd/mrtd imports daemon; daemon imports config,
// rootfs, pool, control, internal/systemd and container (for the workers'
// container options), never supervisor or reaper, which pool owns. Errors
// name no flag: cmd/mrtd words them (deps_test.go enforces the directions).
package daemon
