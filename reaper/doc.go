// Package reaper makes mrtd a child subreaper and reaps every child it
// gets: the runc processes it starts and, since runc exits once a detached
// container runs, each container's init, which the kernel reparents to mrtd.
// Exits are routed by pid to whoever waits for them, so no runc process has to
// stay resident per container, and nothing races exec.Cmd.Wait: runc is
// started through the Reaper, which implements go-runc's ProcessMonitor, as
// containerd's reaper does.
//
// It imports no mrtd package; pool installs it, container routes runc
// through it.
package reaper
