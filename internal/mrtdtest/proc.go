package mrtdtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ClockTicks is USER_HZ, the unit of /proc/<pid>/stat times (sysconf
// _SC_CLK_TCK), which is 100 on every Linux architecture Go supports.
const ClockTicks = 100

// Proc is one line of /proc/<pid>/stat.
type Proc struct {
	Pid, PPid    int
	State        byte
	Comm         string
	UTime, STime uint64 // clock ticks
}

// ReadProc parses /proc/<pid>/stat.
func ReadProc(pid int) (Proc, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Proc{}, err
	}
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return Proc{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[end+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return Proc{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	p := Proc{Pid: pid, Comm: string(data[open+1 : end]), State: f[0][0]}
	p.PPid, _ = strconv.Atoi(f[1])
	p.UTime, _ = strconv.ParseUint(f[11], 10, 64)
	p.STime, _ = strconv.ParseUint(f[12], 10, 64)
	return p, nil
}

// Procs returns every process on the host.
func Procs() []Proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := ReadProc(pid); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Children returns the processes whose parent is pid.
func Children(pid int) []Proc {
	var out []Proc
	for _, p := range Procs() {
		if p.PPid == pid {
			out = append(out, p)
		}
	}
	return out
}

// PSS is the proportional set size of pid, in bytes.
func PSS(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/smaps_rollup has no Pss line", pid)
}

// FDs counts the open file descriptors of pid.
func FDs(pid int) (int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(ents), err
}

// RuncProcesses returns the processes running one of the runc binaries
// given, or whose name starts with "runc" (runc's init stages are named
// runc:[0:PARENT], runc:[1:CHILD], runc:[2:INIT]; a binary named
// runc-<digest> shows as runc-<digest>, cut to 15 bytes).
func RuncProcesses(binaries ...string) []Proc {
	var ids []fileID
	for _, b := range binaries {
		if id, ok := statID(b); ok {
			ids = append(ids, id)
		}
	}
	var out []Proc
	for _, p := range Procs() {
		if strings.HasPrefix(p.Comm, "runc") {
			out = append(out, p)
			continue
		}
		if id, ok := statID(filepath.Join("/proc", strconv.Itoa(p.Pid), "exe")); ok {
			for _, want := range ids {
				if id == want {
					out = append(out, p)
					break
				}
			}
		}
	}
	return out
}

type fileID struct{ dev, ino uint64 }

func statID(p string) (fileID, bool) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), st.Ino}, true
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	p, err := ReadProc(pid)
	return err == nil && p.State != 'Z' && p.State != 'X'
}

// Cmdline returns pid's command line, its arguments joined by spaces.
func Cmdline(pid int) string {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
}

// ReapPid waits for pid, a child of this process (a subreaper), for up to
// timeout. It reports whether pid was reaped.
func ReapPid(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if got == pid {
			return true
		}
		if err != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// ReapAll reaps every exited child of this process, without blocking, and
// returns their pids. Call it only when no exec.Cmd is being waited for.
func ReapAll() []int {
	var pids []int
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return pids
		}
		pids = append(pids, pid)
	}
}

// SetSubreaper makes this process the reaper of its orphaned descendants:
// detached containers' inits, and those of an mrtd that died.
func SetSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// LiveChildren returns the pids of pid's children that are not zombies.
func LiveChildren(pid int) []int {
	var out []int
	for _, p := range Children(pid) {
		if p.State != 'Z' {
			out = append(out, p.Pid)
		}
	}
	return out
}

// Zombies counts pid's children that exited and were not reaped.
func Zombies(pid int) int {
	n := 0
	for _, p := range Children(pid) {
		if p.State == 'Z' {
			n++
		}
	}
	return n
}
