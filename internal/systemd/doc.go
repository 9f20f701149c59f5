// Package systemd is mrtd's glue to systemd: a Notifier that reports the pool
// through the sd_notify protocol (READY=1 once every worker had its first
// attempt, STATUS=, RELOADING=1, STOPPING=1 with the time a stop needs) and
// pings the watchdog while a probe answers, and a zapcore.Core that writes log
// entries to journald in its native protocol. It uses go-systemd for the
// protocol's constants, the notify socket and the journal stream check.
//
// Only the daemon package and cmd/mrtd import it. It imports no mrtd
// package: it sees workers by name and WorkerState, never pool or supervisor
// types, so the daemon maps pool events to WorkerState.
package systemd
