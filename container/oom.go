package container

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupRoot is where the cgroup file systems are mounted: cgroup v2's
// hierarchy, or cgroup v1's, one a directory.
const cgroupRoot = "/sys/fs/cgroup"

// oomFile returns the file whose oom_kill line counts the OOM kills in the
// cgroup of the process pid, when that cgroup is its own, not this
// process's: the container's own cgroup, which runc creates when it has
// cgroups to manage (mrtd run by root, or a delegated subtree), and
// removes on delete. That file is memory.oom_control in cgroup v1's memory
// hierarchy (under root/memory), else memory.events in cgroup v2 (under
// root). A rootless container without a cgroup of its own shares mrtd's,
// where an OOM kill cannot be told apart from one of mrtd's other
// children's: then it returns "".
func oomFile(root string, pid int) string {
	mine, err := readCgroups("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	theirs, err := readCgroups(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	if m, ok := theirs.memoryV1(); ok {
		if mm, _ := mine.memoryV1(); m == mm || m == "/" {
			return ""
		}
		return filepath.Join(root, "memory", m, "memory.oom_control")
	}
	if theirs.v2 == "" || theirs.v2 == mine.v2 || theirs.v2 == "/" {
		return ""
	}
	return filepath.Join(root, theirs.v2, "memory.events")
}

// cgroups are the lines of a /proc/PID/cgroup file: the cgroup v2 path
// (0::PATH) and cgroup v1's, by controller.
type cgroups struct {
	v2 string
	v1 map[string]string
}

func (c cgroups) memoryV1() (string, bool) {
	p, ok := c.v1["memory"]
	return p, ok
}

// readCgroups reads a /proc/PID/cgroup file.
func readCgroups(file string) (cgroups, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return cgroups{}, err
	}
	c := cgroups{v1: map[string]string{}}
	for line := range strings.Lines(string(b)) {
		id, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		ctrls, p, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 {
			continue
		}
		if id == "0" && ctrls == "" {
			c.v2 = p
			continue
		}
		for _, ctrl := range strings.Split(ctrls, ",") {
			if ctrl != "" && !strings.HasPrefix(ctrl, "name=") {
				c.v1[ctrl] = p
			}
		}
	}
	return c, nil
}

// oomKills is the count on the oom_kill line of file (memory.events or
// memory.oom_control); 0 when it cannot be read (no memory controller
// there, or no cgroup).
func oomKills(file string) int {
	if file == "" {
		return 0
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		if k == "oom_kill" {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// OOMKilled reports whether the kernel's OOM killer killed a process of
// the container: its own cgroup (see oomFile) counted an OOM kill. Call it
// once the init exited and before Delete, which removes the cgroup.
// Without a cgroup of its own it is always false: an OOM kill is then not
// told apart from any other SIGKILL.
func (p *Process) OOMKilled() bool {
	return oomKills(p.oomFile) > 0
}
