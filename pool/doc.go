// Package pool builds N worker containers from one configuration and one
// read-only rootfs, and hands them to a supervisor that keeps them running.
// A worker is a supervisor.Service whose Serve starts a detached container,
// waits for its init to exit (routed by the reaper) or for the daemon to
// stop, and deletes it.
package pool
