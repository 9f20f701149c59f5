// Package mrtdtest is the one harness for driving a real mrtd from outside:
// the black-box tests in e2e/ and the tools under tools/ (bench, soak) use
// it.
//
//   - Env (env.go) is the integration environment the e2e tests share: mrtd
//     built from ./cmd/mrtd, the runc `make` built (MRTD_RUNC), a tiny
//     rootfs holding one static program (testdata/probe, rootfs.go),
//     per-test directories, and the unprivileged uid mrtd runs as when the
//     tests run as root. Setup gates it as `make test` expects: no
//     MRTD_RUNC skips, unless MRTD_INTEGRATION=1 asks for it.
//   - Daemon (daemon.go) is one running `mrtd --workers N` whose JSON log is
//     followed: a State for the tools (which worker runs which container
//     init, restarts, exits) and, for tests, every line and event in order
//     (Next, WaitLog) with bounded waits; Stop, Terminate and StopCleanly end
//     it.
//   - proc.go reads /proc: liveness, children, zombies, open fds, CPU time,
//     PSS, resident runc processes; and reaps for a subreaper.
//   - journal.go listens as journald would, for --log-format journal.
//
// It imports nothing of mrtd's own packages: what it knows of mrtd is its
// command line, its log and its exit status.
package mrtdtest
