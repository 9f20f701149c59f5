package config

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits are a container's resource limits. Rlimits, the OOM score
// adjustment and the nice value need no cgroups; Memory, CPUs and
// PidsLimit need a cgroup v2 subtree delegated to the user (a systemd user
// service with Delegate=yes).
type Limits struct {
	// Ulimits are --ulimit NAME=SOFT[:HARD] (nofile, nproc, as, core, ...,
	// as Podman's); see ParseUlimit.
	Ulimits []string
	// OOMScoreAdj is --oom-score-adj, -1000 to 1000; "" leaves mrtd's.
	OOMScoreAdj string
	// Nice is --nice, -20 to 19; "" leaves mrtd's.
	Nice string
	// Memory is --memory, a size such as 512M; "" is no limit.
	Memory string
	// CPUs is --cpus, a number of CPUs such as 1.5; "" is no limit.
	CPUs string
	// PidsLimit is --pids-limit; 0 is no limit.
	PidsLimit int
}

// WorkerLimits are the limits a [worker.N] section sets for its worker
// alone: an rlimit replaces the pool's of the same name, the OOM score
// adjustment and the nice value replace the pool's.
type WorkerLimits struct {
	// Ulimits are NAME=SOFT[:HARD], as --ulimit.
	Ulimits []string
	// OOMScoreAdj and Nice are as --oom-score-adj and --nice; "" keeps
	// the pool's.
	OOMScoreAdj string
	Nice        string
}

// Unlimited is an rlimit without a limit (RLIM_INFINITY), -1 in a
// --ulimit.
const Unlimited = math.MaxUint64

// Ulimit is a parsed --ulimit.
type Ulimit struct {
	// Name is as given: nofile, nproc, ...
	Name string
	// Resource is the rlimit's number for getrlimit(2): unix.RLIMIT_NOFILE.
	Resource   int
	Soft, Hard uint64
}

// Type is the rlimit's name in the runtime-spec: RLIMIT_NOFILE.
func (u Ulimit) Type() string { return "RLIMIT_" + strings.ToUpper(u.Name) }

// ulimitNames are the names --ulimit takes, Podman's and Docker's.
var ulimitNames = map[string]int{
	"as":         unix.RLIMIT_AS,
	"core":       unix.RLIMIT_CORE,
	"cpu":        unix.RLIMIT_CPU,
	"data":       unix.RLIMIT_DATA,
	"fsize":      unix.RLIMIT_FSIZE,
	"locks":      unix.RLIMIT_LOCKS,
	"memlock":    unix.RLIMIT_MEMLOCK,
	"msgqueue":   unix.RLIMIT_MSGQUEUE,
	"nice":       unix.RLIMIT_NICE,
	"nofile":     unix.RLIMIT_NOFILE,
	"nproc":      unix.RLIMIT_NPROC,
	"rss":        unix.RLIMIT_RSS,
	"rtprio":     unix.RLIMIT_RTPRIO,
	"rttime":     unix.RLIMIT_RTTIME,
	"sigpending": unix.RLIMIT_SIGPENDING,
	"stack":      unix.RLIMIT_STACK,
}

// UlimitNames lists the names --ulimit takes, sorted.
func UlimitNames() []string {
	names := make([]string, 0, len(ulimitNames))
	for n := range ulimitNames {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// MinMemory is the smallest --memory: Docker's and Podman's least (6 MiB).
const MinMemory = 6 << 20

// CPUPeriod is the CFS period --cpus is turned into a quota of (100 ms,
// Docker's and Podman's); the kernel's smallest quota is 1 ms, so the
// least --cpus is 0.01.
const CPUPeriod = 100000

// ParseUlimit parses --ulimit NAME=SOFT[:HARD], as Podman's: NAME is one of
// UlimitNames (nofile, nproc, as, core, ...), SOFT and HARD are counts (or
// bytes, or seconds, as the rlimit has it) and -1 is unlimited. HARD
// defaults to SOFT; SOFT may not exceed HARD.
func ParseUlimit(s string) (Ulimit, error) { return parseUlimit("--ulimit", s) }

func parseUlimit(what, s string) (Ulimit, error) {
	name, vals, ok := strings.Cut(s, "=")
	if !ok || name == "" || vals == "" {
		return Ulimit{}, usagef("%s %q: use NAME=SOFT[:HARD], such as nofile=1024:4096 (-1 is unlimited)", what, s)
	}
	name = strings.ToLower(name)
	res, ok := ulimitNames[name]
	if !ok {
		return Ulimit{}, usagef("%s %q: unknown rlimit %q: use one of %s", what, s, name, strings.Join(UlimitNames(), ", "))
	}
	softS, hardS, hasHard := strings.Cut(vals, ":")
	if !hasHard {
		hardS = softS
	}
	u := Ulimit{Name: name, Resource: res}
	var err error
	if u.Soft, err = rlimitValue(softS); err == nil {
		u.Hard, err = rlimitValue(hardS)
	}
	if err != nil {
		return Ulimit{}, usagef("%s %q: %v: use whole numbers, -1 for unlimited, as in %s=1024:4096", what, s, err, name)
	}
	if u.Soft > u.Hard {
		return Ulimit{}, usagef("%s %q: the soft limit %s is above the hard limit %s: lower the soft one or raise the hard one", what, s, softS, hardS)
	}
	return u, nil
}

// rlimitValue reads a count, or -1 for Unlimited.
func rlimitValue(s string) (uint64, error) {
	if s == "-1" {
		return Unlimited, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == Unlimited {
		return 0, fmt.Errorf("%q is not a limit", s)
	}
	return n, nil
}

// FormatRlimit writes an rlimit value as --ulimit takes it: -1 for
// Unlimited.
func FormatRlimit(v uint64) string {
	if v == Unlimited {
		return "-1"
	}
	return strconv.FormatUint(v, 10)
}

// ParseUlimits parses a list of --ulimit; a name given twice is an error.
func ParseUlimits(list []string) ([]Ulimit, error) { return parseUlimits("--ulimit", list) }

func parseUlimits(what string, list []string) ([]Ulimit, error) {
	var out []Ulimit
	seen := map[string]bool{}
	for _, s := range list {
		u, err := parseUlimit(what, s)
		if err != nil {
			return nil, err
		}
		if seen[u.Name] {
			return nil, usagef("%s %s is given twice: keep one", what, u.Name)
		}
		seen[u.Name] = true
		out = append(out, u)
	}
	return out, nil
}

// ParseNice parses --nice: -20 (least nice) to 19.
func ParseNice(s string) (int, error) { return parseNice("--nice", s) }

func parseNice(what, s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < -20 || n > 19 {
		return 0, usagef("%s %q: use a whole number from -20 (most favourable scheduling) to 19 (least), such as 10 for a worker that should yield to the host", what, s)
	}
	return n, nil
}

// ParseOOMScoreAdj parses --oom-score-adj: -1000 (never killed for lack of
// memory) to 1000 (killed first).
func ParseOOMScoreAdj(s string) (int, error) { return parseOOMScoreAdj("--oom-score-adj", s) }

func parseOOMScoreAdj(what, s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < -1000 || n > 1000 {
		return 0, usagef("%s %q: use a whole number from -1000 (never killed when memory runs out) to 1000 (killed first), such as 500", what, s)
	}
	return n, nil
}

// ParseMemory parses --memory: a size (ParseSize) of at least MinMemory.
func ParseMemory(s string) (int64, error) {
	n, err := ParseSize(s)
	if err != nil {
		return 0, usagef("--memory %q: %v: use a size such as 512M or 2G", s, err)
	}
	if n < MinMemory {
		return 0, usagef("--memory %q is below 6M, the least Docker and Podman accept (a worker would be killed as it starts): use 6M or more", s)
	}
	return n, nil
}

// ParseCPUs parses --cpus into a CFS quota per CPUPeriod: 1.5 is 150000.
func ParseCPUs(s string) (int64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return 0, usagef("--cpus %q: use a number of CPUs above 0, such as 1.5 or 0.5", s)
	}
	if f > 1<<20 {
		return 0, usagef("--cpus %q: use at most the number of CPUs of the host", s)
	}
	q := math.Round(f * CPUPeriod)
	if q < 1000 {
		return 0, usagef("--cpus %q is below 0.01, the least the kernel accepts (1 ms per 100 ms): use 0.01 or more", s)
	}
	return int64(q), nil
}

// NeedsCgroups reports whether l sets a limit that only a cgroup applies:
// --memory, --cpus or --pids-limit.
func (l *Limits) NeedsCgroups() bool {
	return l.Memory != "" || l.CPUs != "" || l.PidsLimit != 0
}

// Validate checks l and returns a *UsageError naming the first problem and
// its fix. What depends on the host (hard limits above mrtd's own, a nice
// value or an OOM score below mrtd's, cgroup delegation) is checked when
// the container is made.
func (l *Limits) Validate() error {
	if _, err := ParseUlimits(l.Ulimits); err != nil {
		return err
	}
	if l.OOMScoreAdj != "" {
		if _, err := ParseOOMScoreAdj(l.OOMScoreAdj); err != nil {
			return err
		}
	}
	if l.Nice != "" {
		if _, err := ParseNice(l.Nice); err != nil {
			return err
		}
	}
	if l.Memory != "" {
		if _, err := ParseMemory(l.Memory); err != nil {
			return err
		}
	}
	if l.CPUs != "" {
		if _, err := ParseCPUs(l.CPUs); err != nil {
			return err
		}
	}
	if l.PidsLimit < 0 {
		return usagef("--pids-limit %d: use a positive number of processes, or 0 for no limit", l.PidsLimit)
	}
	return nil
}

// checkWorkerLimit checks the values of key (ulimit, nice or
// oom-score-adj; others pass) of a [worker.N] section, named by what in
// its error.
func checkWorkerLimit(what, key string, vals []string) error {
	var err error
	switch key {
	case "ulimit":
		_, err = parseUlimits(what, vals)
	case "nice":
		_, err = parseNice(what, vals[0])
	case "oom-score-adj":
		_, err = parseOOMScoreAdj(what, vals[0])
	}
	return err
}

// describe is w for mrtd config: what it sets, after a space; "" when
// nothing.
func (w *WorkerLimits) describe() string {
	var b strings.Builder
	if len(w.Ulimits) > 0 {
		fmt.Fprintf(&b, " ulimit %q", w.Ulimits)
	}
	if w.Nice != "" {
		fmt.Fprintf(&b, " nice %s", w.Nice)
	}
	if w.OOMScoreAdj != "" {
		fmt.Fprintf(&b, " oom-score-adj %s", w.OOMScoreAdj)
	}
	return b.String()
}

// IsZero reports whether w sets nothing.
func (w *WorkerLimits) IsZero() bool {
	return len(w.Ulimits) == 0 && w.OOMScoreAdj == "" && w.Nice == ""
}

// Apply returns l with w's settings in place of the pool's: an rlimit of w
// replaces l's of the same name, w's OOM score adjustment and nice value
// replace l's when set. Both must be valid.
func (w *WorkerLimits) Apply(l Limits) Limits {
	if w.IsZero() {
		return l
	}
	out := l
	out.Ulimits = nil
	over := map[string]bool{}
	for _, s := range w.Ulimits {
		name, _, _ := strings.Cut(s, "=")
		over[strings.ToLower(name)] = true
	}
	for _, s := range l.Ulimits {
		if name, _, _ := strings.Cut(s, "="); !over[strings.ToLower(name)] {
			out.Ulimits = append(out.Ulimits, s)
		}
	}
	out.Ulimits = append(out.Ulimits, w.Ulimits...)
	if w.OOMScoreAdj != "" {
		out.OOMScoreAdj = w.OOMScoreAdj
	}
	if w.Nice != "" {
		out.Nice = w.Nice
	}
	return out
}

// optionalInt is a flag holding an integer, or "" when not given: the
// config file takes it as an integer (nice = 10), and Validate reads it.
type optionalInt string

func (v *optionalInt) String() string { return string(*v) }

func (v *optionalInt) Set(s string) error {
	*v = optionalInt(strings.TrimSpace(s))
	return nil
}

// Get makes the config file expect an integer (keyKind).
func (v *optionalInt) Get() any {
	n, _ := strconv.Atoi(string(*v))
	return n
}
