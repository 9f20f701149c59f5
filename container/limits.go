package container

import (
	"fmt"
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Limits are a container's resource limits: rlimits, its OOM score
// adjustment and nice value, which need no cgroups, and Resources, which
// do. The zero value changes nothing: the command gets mrtd's own.
type Limits struct {
	// Rlimits are set on the container's init (runc's process.rlimits);
	// an RLIMIT_NOFILE among them replaces the one of Options.NoFile.
	Rlimits []specs.POSIXRlimit
	// OOMScoreAdj, when set, is the init's /proc/PID/oom_score_adj,
	// -1000 to 1000 (process.oomScoreAdj).
	OOMScoreAdj *int
	// Nice, when set, is the init's nice value, -20 to 19: runc sets it
	// with sched_setattr(SCHED_OTHER) before it executes the command
	// (process.scheduler, runc 1.2 and later).
	Nice *int
	// Resources are cgroup limits; nil is none. A rootless runc can
	// apply them only in a cgroup v2 subtree delegated to its user:
	// CgroupParent names it.
	Resources *Resources
	// CgroupParent, when set, is a cgroup (a path below the cgroup v2
	// mount, such as /user.slice/.../mrtd.service) under which the
	// container gets its own cgroup, CgroupParent/<id>, in place of the
	// one Runtime gives it; see Delegation.
	CgroupParent string
}

// Resources are the cgroup limits of a container.
type Resources struct {
	// Memory is the most memory the container may use, in bytes (cgroup
	// v2 memory.max); 0 is no limit.
	Memory int64
	// CPUQuota is the CPU time, in microseconds, the container may use
	// every CPUPeriod (cpu.max); 0 is no limit.
	CPUQuota  int64
	CPUPeriod uint64
	// Pids is the most processes the container may have (pids.max); 0 is
	// no limit.
	Pids int64
}

// Controllers are the cgroup controllers r needs, in cgroup v2's names.
func (r *Resources) Controllers() []string {
	var c []string
	if r == nil {
		return nil
	}
	if r.CPUQuota > 0 {
		c = append(c, "cpu")
	}
	if r.Memory > 0 {
		c = append(c, "memory")
	}
	if r.Pids > 0 {
		c = append(c, "pids")
	}
	return c
}

// validateLimits reports limits that runc would refuse.
func (l *Limits) validateLimits() error {
	seen := map[string]bool{}
	for _, r := range l.Rlimits {
		if !strings.HasPrefix(r.Type, "RLIMIT_") {
			return fmt.Errorf("rlimit %q: not an RLIMIT_ name", r.Type)
		}
		if r.Soft > r.Hard {
			return fmt.Errorf("rlimit %s: soft limit %d above the hard limit %d", r.Type, r.Soft, r.Hard)
		}
		if seen[r.Type] {
			return fmt.Errorf("rlimit %s is given twice", r.Type)
		}
		seen[r.Type] = true
	}
	if n := l.OOMScoreAdj; n != nil && (*n < -1000 || *n > 1000) {
		return fmt.Errorf("OOM score adjustment %d is not from -1000 to 1000", *n)
	}
	if n := l.Nice; n != nil && (*n < -20 || *n > 19) {
		return fmt.Errorf("nice value %d is not from -20 to 19", *n)
	}
	if r := l.Resources; r != nil && (r.Memory < 0 || r.CPUQuota < 0 || r.Pids < 0 || r.CPUQuota > 0 && r.CPUPeriod == 0) {
		return fmt.Errorf("cgroup resources %+v: limits must be positive, and a CPU quota needs its period", *r)
	}
	if l.CgroupParent != "" && !path.IsAbs(l.CgroupParent) {
		return fmt.Errorf("cgroup parent %q is not an absolute cgroup path", l.CgroupParent)
	}
	return nil
}

// applyLimits puts l into s, the spec of the container id.
func (l *Limits) applyLimits(s *specs.Spec, id string) {
	for _, r := range l.Rlimits {
		i := 0
		for i < len(s.Process.Rlimits) && s.Process.Rlimits[i].Type != r.Type {
			i++
		}
		if i == len(s.Process.Rlimits) {
			s.Process.Rlimits = append(s.Process.Rlimits, r)
		} else {
			s.Process.Rlimits[i] = r
		}
	}
	if l.OOMScoreAdj != nil {
		n := *l.OOMScoreAdj
		s.Process.OOMScoreAdj = &n
	}
	if l.Nice != nil {
		s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedOther, Nice: int32(*l.Nice)}
	}
	if l.CgroupParent != "" {
		s.Linux.CgroupsPath = path.Join(l.CgroupParent, id)
	}
	r := l.Resources
	if r == nil || len(r.Controllers()) == 0 {
		return
	}
	res := &specs.LinuxResources{}
	if r.Memory > 0 {
		m := r.Memory
		res.Memory = &specs.LinuxMemory{Limit: &m}
	}
	if r.CPUQuota > 0 {
		q, p := r.CPUQuota, r.CPUPeriod
		res.CPU = &specs.LinuxCPU{Quota: &q, Period: &p}
	}
	if r.Pids > 0 {
		n := r.Pids
		res.Pids = &specs.LinuxPids{Limit: &n}
	}
	s.Linux.Resources = res
}
