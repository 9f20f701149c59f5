package container

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupRoot is where the cgroup v2 hierarchy is mounted.
const cgroupRoot = "/sys/fs/cgroup"

// ownCgroup returns the cgroup v2 directory of the process pid (under
// root) when it differs from this process's: the container's own cgroup,
// which runc creates when it has cgroups to manage (mrtd run by root, or a
// delegated subtree), and removes on delete. A rootless container without
// one shares mrtd's cgroup, where an OOM kill cannot be told apart from
// one of mrtd's other children: then it returns "".
func ownCgroup(root string, pid int) string {
	mine, err := readCgroupV2("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	theirs, err := readCgroupV2(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil || theirs == mine || theirs == "/" {
		return ""
	}
	return filepath.Join(root, theirs)
}

// readCgroupV2 returns the cgroup v2 path ("0::/...") in a
// /proc/PID/cgroup file.
func readCgroupV2(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// oomKills is the oom_kill count in the memory.events of the cgroup dir;
// 0 when it cannot be read (no memory controller there, or no cgroup).
func oomKills(dir string) int {
	if dir == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(dir, "memory.events"))
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
// the container: its own cgroup (see ownCgroup) counted an OOM kill. Call
// it once the init exited and before Delete, which removes the cgroup.
// Without a cgroup of its own it is always false: an OOM kill is then not
// told apart from any other SIGKILL.
func (p *Process) OOMKilled() bool {
	return oomKills(p.cgroup) > 0
}
