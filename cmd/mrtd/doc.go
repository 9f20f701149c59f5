// Command mrtd runs rootless containers from one binary that carries its own
// runc and root filesystem: a pool of workers (the daemon) or one container
// in the foreground (mrtd run), and the commands that talk to a running
// daemon (status, scale, restart) or show its settings (config).
//
// This package only dispatches, prints help, status and settings, chooses
// exit codes, and words errors in terms of mrtd's flags. The settings come
// from config, the daemon from daemon, the control client from control; it
// imports no supervisor, reaper or pool type, and container only for the
// exit codes of mrtd run.
package main
