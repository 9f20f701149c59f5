package container

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// oomFile returns the file whose oom_kill line counts the OOM kills in
// the cgroup runc made for container id, as runc's state records it
// (cgroup_paths): memory.oom_control in cgroup v1's memory hierarchy, else
// memory.events in cgroup v2's. Read from the state, which runc writes
// before run -d returns, not from /proc/PID/cgroup, which an init the OOM
// killer already took no longer has. Only for a container given a cgroup
// of its own (a cgroups path: mrtd run by root, or a delegated subtree); a
// rootless container without one shares mrtd's, where an OOM kill cannot
// be told apart from one of mrtd's other children's.
func (rt *Runtime) oomFile(id string) string {
	b, err := os.ReadFile(filepath.Join(rt.StateDir(), id, "state.json"))
	if err != nil {
		return ""
	}
	var st struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	if json.Unmarshal(b, &st) != nil {
		return ""
	}
	if p := st.CgroupPaths["memory"]; p != "" {
		return filepath.Join(p, "memory.oom_control")
	}
	if p := st.CgroupPaths[""]; p != "" {
		return filepath.Join(p, "memory.events")
	}
	return ""
}

// cgroups are the lines of a /proc/PID/cgroup file: the cgroup v2 path
// (0::PATH) and cgroup v1's, by controller.
type cgroups struct {
	v2 string
	v1 map[string]string
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
