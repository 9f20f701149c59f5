package daemon

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
)

// limitHost is what a container's limits are checked against: this
// process's own, which runc passes on and which only privilege goes
// beyond, and its cgroups. Tests replace it.
type limitHost struct {
	// privileged is root outside a user namespace: runc makes cgroups.
	privileged bool
	// sysResource is CAP_SYS_RESOURCE on the host (root outside a user
	// namespace, unless a container runtime took it away): runc can raise
	// hard rlimits and lower the OOM score.
	sysResource bool
	getrlimit   func(resource int) (unix.Rlimit, error)
	// oomScoreAdj reads /proc/self/oom_score_adj.
	oomScoreAdj func() (int, error)
	// nice is this process's nice value.
	nice func() (int, error)
	// nrOpen is fs.nr_open, the most RLIMIT_NOFILE can be; 0 when
	// unknown.
	nrOpen  uint64
	numCPU  int
	cgroups container.CgroupHost
}

// thisLimitHost is this process's limitHost.
func thisLimitHost() limitHost {
	h := limitHost{
		privileged:  privileged(),
		sysResource: privileged() && hasCapability(unix.CAP_SYS_RESOURCE),
		getrlimit: func(res int) (unix.Rlimit, error) {
			var rl unix.Rlimit
			err := unix.Getrlimit(res, &rl)
			return rl, err
		},
		oomScoreAdj: func() (int, error) {
			b, err := os.ReadFile("/proc/self/oom_score_adj")
			if err != nil {
				return 0, err
			}
			return strconv.Atoi(strings.TrimSpace(string(b)))
		},
		nice: func() (int, error) {
			// The system call returns 20 - nice (1 to 40); glibc's
			// getpriority is what gives the nice value.
			p, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
			return 20 - p, err
		},
		numCPU:  runtime.NumCPU(),
		cgroups: container.HostCgroups,
	}
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		h.nrOpen, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	return h
}

// containerLimits are the container limits of l, checked against h: what
// this process cannot grant is a usage error before any container starts,
// rather than a runc failure at every start. Cgroup limits put mrtd into
// the leaf of its delegated cgroup v2 subtree (container.Delegation).
func containerLimits(l config.Limits, h limitHost) (container.Limits, error) {
	pl, err := processLimits("--ulimit", "--nice", "--oom-score-adj", l, h)
	if err != nil {
		return container.Limits{}, err
	}
	if !l.NeedsCgroups() {
		return pl, nil
	}
	res, err := resources(l, h)
	if err != nil {
		return container.Limits{}, err
	}
	pl.Resources = res
	ctrls := res.Controllers()
	if h.privileged {
		// runc as root makes its cgroups itself, v1 or v2, under the
		// Runtime's path.
		if err := h.cgroups.CheckRootCgroups(ctrls); err != nil {
			return container.Limits{}, &config.UsageError{Err: fmt.Errorf("%s cannot be applied: %w", cgroupFlags(l), err)}
		}
		return pl, nil
	}
	d, err := h.cgroups.Delegated(ctrls)
	if err != nil {
		return container.Limits{}, &config.UsageError{Err: fmt.Errorf("%s cannot be applied: %w", cgroupFlags(l), err)}
	}
	if err := d.Enter(ctrls); err != nil {
		return container.Limits{}, fmt.Errorf("%s: %w", cgroupFlags(l), err)
	}
	pl.CgroupParent = d.Path
	return pl, nil
}

// cgroupFlags names the cgroup limits l sets, as given.
func cgroupFlags(l config.Limits) string {
	var f []string
	if l.Memory != "" {
		f = append(f, "--memory "+l.Memory)
	}
	if l.CPUs != "" {
		f = append(f, "--cpus "+l.CPUs)
	}
	if l.PidsLimit != 0 {
		f = append(f, "--pids-limit "+strconv.Itoa(l.PidsLimit))
	}
	return strings.Join(f, " and ")
}

// resources are l's cgroup limits, checked against the host's CPUs.
func resources(l config.Limits, h limitHost) (*container.Resources, error) {
	r := &container.Resources{Pids: int64(l.PidsLimit)}
	var err error
	if l.Memory != "" {
		if r.Memory, err = config.ParseMemory(l.Memory); err != nil {
			return nil, err
		}
	}
	if l.CPUs != "" {
		if r.CPUQuota, err = config.ParseCPUs(l.CPUs); err != nil {
			return nil, err
		}
		r.CPUPeriod = config.CPUPeriod
		if h.numCPU > 0 && r.CPUQuota > int64(h.numCPU)*config.CPUPeriod {
			return nil, &config.UsageError{Err: fmt.Errorf("--cpus %s: this host has %d CPUs: use at most %d", l.CPUs, h.numCPU, h.numCPU)}
		}
	}
	return r, nil
}

// processLimits are the rlimits, OOM score adjustment and nice value of
// l, checked against h; ulimitFlag, niceFlag and oomFlag name their
// settings in errors (--ulimit, or [worker.N] ulimit).
func processLimits(ulimitFlag, niceFlag, oomFlag string, l config.Limits, h limitHost) (container.Limits, error) {
	usage := func(format string, args ...any) error {
		return &config.UsageError{Err: fmt.Errorf(format, args...)}
	}
	var out container.Limits
	for _, s := range l.Ulimits {
		u, err := config.ParseUlimit(s)
		if err != nil {
			return out, err
		}
		if u.Resource == unix.RLIMIT_NOFILE && h.nrOpen > 0 && u.Hard > h.nrOpen {
			// Unlimited too: the kernel refuses it to root as well.
			return out, usage("%s %s: the kernel's fs.nr_open (%d) is the most RLIMIT_NOFILE can be, unlimited included: use at most %d", ulimitFlag, s, h.nrOpen, h.nrOpen)
		}
		if !h.sysResource {
			own, err := h.getrlimit(u.Resource)
			if err != nil {
				return out, fmt.Errorf("getrlimit %s: %w", u.Type(), err)
			}
			if u.Hard > own.Max {
				return out, usage("%s %s: the hard limit %s is above mrtd's own (%s), which only CAP_SYS_RESOURCE can raise: use at most %s, or raise mrtd's (Limit%s= in its systemd unit, ulimit -H in a shell)",
					ulimitFlag, s, config.FormatRlimit(u.Hard), config.FormatRlimit(own.Max), config.FormatRlimit(own.Max), systemdLimitName(u.Name))
			}
		}
		out.Rlimits = append(out.Rlimits, specs.POSIXRlimit{Type: u.Type(), Soft: u.Soft, Hard: u.Hard})
	}
	if l.OOMScoreAdj != "" {
		n, err := config.ParseOOMScoreAdj(l.OOMScoreAdj)
		if err != nil {
			return out, err
		}
		if !h.sysResource {
			own, err := h.oomScoreAdj()
			if err != nil {
				return out, fmt.Errorf("reading mrtd's OOM score adjustment: %w", err)
			}
			if n < own {
				return out, usage("%s %d is below mrtd's own OOM score adjustment (%d): lowering it needs CAP_SYS_RESOURCE, which mrtd lacks: use %d or more", oomFlag, n, own, own)
			}
		}
		out.OOMScoreAdj = &n
	}
	if l.Nice != "" {
		n, err := config.ParseNice(l.Nice)
		if err != nil {
			return out, err
		}
		own, err := h.nice()
		if err != nil {
			return out, fmt.Errorf("reading mrtd's nice value: %w", err)
		}
		if n < own {
			// runc sets the nice value inside the container's user
			// namespace, where not even root's containers have
			// CAP_SYS_NICE: only RLIMIT_NICE (20 - nice) lets it go
			// below mrtd's.
			rl, err := h.getrlimit(unix.RLIMIT_NICE)
			if err != nil {
				return out, fmt.Errorf("getrlimit RLIMIT_NICE: %w", err)
			}
			if rl.Cur < uint64(20-n) {
				return out, usage("%s %d is below mrtd's own nice value (%d): a container's process can only be made nicer than mrtd, since lowering it needs CAP_SYS_NICE on the host (or an RLIMIT_NICE of %d for mrtd, LimitNICE= in its unit): use %d or more", niceFlag, n, own, 20-n, own)
			}
		}
		out.Nice = &n
	}
	return out, nil
}

// hasCapability reports whether this process has the capability c in
// its effective set (CapEff in /proc/self/status).
func hasCapability(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<uint(c)) != 0
		}
	}
	return false
}

// systemdLimitName is the name of an rlimit in systemd's Limit*=
// settings: nofile -> NOFILE, rttime -> RTTIME.
func systemdLimitName(name string) string { return strings.ToUpper(name) }

// workerLimits are the process limits of worker i: the pool's l with
// the worker's [worker.i] settings w in place, checked against h.
func workerLimits(i int, l config.Limits, w config.WorkerLimits, h limitHost) (container.Limits, error) {
	section := fmt.Sprintf("[worker.%d] ", i)
	return processLimits(section+"ulimit", section+"nice", section+"oom-score-adj", w.Apply(l), h)
}

// workersLimits are the process limits of the workers whose [worker.N]
// section sets ulimit, nice or oom-score-adj, by index; nil when none
// does. Each is checked against h, so that what mrtd cannot grant to one
// worker is a usage error before the workers start (or a reload applies),
// whatever the worker count.
func workersLimits(st Settings, h limitHost) (map[int]container.Limits, error) {
	var out map[int]container.Limits
	for i, w := range st.Workers {
		if w.WorkerLimits.IsZero() {
			continue
		}
		lim, err := workerLimits(i, st.Container.Limits, w.WorkerLimits, h)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = map[int]container.Limits{}
		}
		out[i] = lim
	}
	return out, nil
}

// applyWorkerLimits gives o, worker i's container, the worker's own
// process limits from lims (workersLimits), if it has any. The cgroup
// limits stay the pool's.
func applyWorkerLimits(o *container.Options, lims map[int]container.Limits, i int) {
	lim, ok := lims[i]
	if !ok {
		return
	}
	o.Rlimits, o.OOMScoreAdj, o.Nice = lim.Rlimits, lim.OOMScoreAdj, lim.Nice
}
