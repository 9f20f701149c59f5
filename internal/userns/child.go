package userns

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Init is the first thing main calls: in a process Enter started it waits
// until the parent has written the maps (an error when the parent failed:
// the process must then exit 125 printing it), and fixes WATCHDOG_PID
// (systemd sets it to the shim's pid; when it equals os.Getppid() it
// becomes os.Getpid()). Elsewhere it does nothing and costs nothing
// measurable.
//
// In the child it also clears the ambient and inheritable capability sets
// that carried its capabilities across its exec (see Enter), so that
// programs it runs get capabilities as any other root's would: from being
// uid 0, not from ambient ones that would survive a change to another
// uid. Go can only change every thread's sets when cgo is not in use (the
// static mrtd); with cgo (tests with -race) they stay set.
//
// Processes the child starts keep Marker (Inside), not the sync pipe.
func Init() error {
	v, ok := os.LookupEnv(syncEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(syncEnv)
	if err := waitMaps(v); err != nil {
		return err
	}
	if _, _, ok := Inside(); !ok {
		return fmt.Errorf("user namespace: %s is %q, not the host user's UID:GID", Marker, os.Getenv(Marker))
	}
	if err := clearInheritable(); err != nil && !errors.Is(err, unix.ENOTSUP) {
		return fmt.Errorf("user namespace: clearing the capabilities inherited across exec: %w", err)
	}
	if p, ok := os.LookupEnv("WATCHDOG_PID"); ok && p == strconv.Itoa(os.Getppid()) {
		os.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	}
	return nil
}

// waitMaps reads the byte the shim writes on the sync pipe (fd, from
// syncEnv) once the maps are written. EOF means the shim failed, or died.
func waitMaps(fd string) error {
	n, err := strconv.Atoi(fd)
	if err != nil || n != syncFD {
		return fmt.Errorf("user namespace: %s is %q, not %d", syncEnv, fd, syncFD)
	}
	f := os.NewFile(uintptr(n), "userns-sync")
	defer f.Close()
	var b [1]byte
	if _, err := f.Read(b[:]); err != nil {
		return fmt.Errorf("user namespace: the shim that started mrtd did not write its id maps (it failed, or died): %w", err)
	}
	return nil
}

// clearInheritable empties the inheritable set of every thread, which
// empties the ambient set too. It returns ENOTSUP when cgo is in use.
func clearInheritable() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	if data[0].Inheritable == 0 && data[1].Inheritable == 0 {
		return nil
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	// Every thread has the sets of the thread that exec'd: all threads
	// get the same data.
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Inside reports whether this process runs in the namespace Enter made
// (or was started by a process that does), and the host user's uid and
// gid (from Marker).
func Inside() (uid, gid uint32, ok bool) {
	v, ok := os.LookupEnv(Marker)
	if !ok {
		return 0, 0, false
	}
	return parseMarker(v)
}

// parseMarker parses Marker's "UID:GID".
func parseMarker(v string) (uid, gid uint32, ok bool) {
	u, g, ok := strings.Cut(v, ":")
	if !ok {
		return 0, 0, false
	}
	uu, err1 := strconv.ParseUint(u, 10, 32)
	gg, err2 := strconv.ParseUint(g, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint32(uu), uint32(gg), true
}
