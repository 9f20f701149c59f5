// Package pool builds N worker containers from one configuration and one
// read-only rootfs, and hands them to a supervisor that keeps them running.
// A worker is a supervisor.Service whose Serve starts a detached container,
// waits for its init to exit (routed by the reaper), for the daemon to
// stop or for its health check (HealthCheck, run with runc exec while the
// container runs) to fail Retries times in a row, and deletes it.
//
// The pool owns what is under it: New makes the process a child subreaper
// and installs the reaper, Config carries the restart policy, and callers
// see Event, Status and Reason, never supervisor or container types. It
// imports supervisor, container and reaper; only daemon imports it. The
// containers run through the Runtime interface, so that tests can use a
// fake one.
package pool
