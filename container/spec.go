package container

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	seccompprofile "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Network modes.
const (
	NetworkHost = "host" // share the host's network namespace
	NetworkNone = "none" // a new network namespace with only loopback
)

// Options describe one container.
type Options struct {
	// Rootfs is the absolute path of the (shared, read-only) root filesystem.
	Rootfs string
	// Args is the command and its arguments. Args[0] is looked up in PATH
	// inside the container.
	Args []string
	// Env is added to (and overrides) the default environment.
	Env []string
	// Cwd is the working directory; "/" when empty.
	Cwd string
	// Hostname; the container id when empty.
	Hostname string
	// UID and GID are the host ids container root maps to, unless IDMaps
	// is set.
	UID, GID uint32
	// IDMaps, when set, are the container's uid and gid maps, replacing
	// the single line that maps container root to UID and GID.
	IDMaps *IDMaps
	// User is who the command runs as; the zero value is container root.
	User User
	// Network is NetworkHost (the default, when empty) or NetworkNone.
	Network string
	// SeccompUnconfined turns off the default seccomp profile.
	SeccompUnconfined bool
	// NoFile is RLIMIT_NOFILE (soft and hard); 1024 when zero.
	NoFile uint64
	// CgroupsPath is runc's cgroupsPath; "/<id>" when empty. Runtime sets
	// it per runtime directory so that ids reused by another mrtd (the
	// same instance name elsewhere) never share a cgroup.
	CgroupsPath string
	// Binds are host paths bind-mounted into the container. Each
	// destination must exist in the rootfs: runc would otherwise create it
	// inside the shared tree.
	Binds []Bind
	// Tmpfs are tmpfs mounted besides /tmp and /run, which always are;
	// one on /tmp or /run replaces the default one. Each destination must
	// exist in the rootfs as a directory, as a bind's.
	Tmpfs []Tmpfs
	// Limits are the rlimits, OOM score, nice value and cgroup limits
	// (limits.go).
	Limits
	// Init, when set, is the host path of a static init (--init) to run
	// as the container's pid 1, in front of Args: it forwards signals to
	// the command, reaps orphans and exits with the command's status. It
	// is bind-mounted read-only at InitPath, on runc's /dev tmpfs, so the
	// shared rootfs is not touched; the process runs InitPath -- Args...
	// (tini's and catatonit's argv). Args[0] is still the command that
	// LookCommand checks, and the stop signal goes to the init.
	Init string
}

// InitPath is where the container sees Options.Init, as Podman mounts
// its init.
const InitPath = "/dev/init"

// IDMaps are a container's uid and gid maps: each line maps Size ids from
// ContainerID on to HostID on, host ids being those of the user namespace
// runc runs in.
type IDMaps struct{ UID, GID []specs.LinuxIDMapping }

// User is the user a container's command runs as, in container ids. Any
// other than root runs without capabilities (only the bounding set is
// kept), as Docker and Podman run a non-root user.
type User struct {
	UID, GID       uint32
	AdditionalGids []uint32
}

// maps returns the uid and gid maps in use: IDMaps, or container root alone
// mapped to UID and GID.
func (o *Options) maps() (uids, gids []specs.LinuxIDMapping) {
	if o.IDMaps != nil {
		return o.IDMaps.UID, o.IDMaps.GID
	}
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: o.UID, Size: 1}},
		[]specs.LinuxIDMapping{{ContainerID: 0, HostID: o.GID, Size: 1}}
}

// validateUser reports a user, or a group of its, that the maps in use
// leave unmapped, and maps that map nothing.
func (o *Options) validateUser() error {
	uids, gids := o.maps()
	for _, m := range []struct {
		kind  string
		lines []specs.LinuxIDMapping
	}{{"uid", uids}, {"gid", gids}} {
		if len(m.lines) == 0 {
			return fmt.Errorf("id maps: no %s map", m.kind)
		}
		for _, l := range m.lines {
			if l.Size == 0 {
				return fmt.Errorf("id maps: %s map line %s has size 0", m.kind, formatMaps([]specs.LinuxIDMapping{l}))
			}
		}
	}
	unmapped := func(kind string, id uint32, m []specs.LinuxIDMapping) error {
		if mapped(id, m) {
			return nil
		}
		if o.IDMaps == nil {
			return fmt.Errorf("user: %s %d is not mapped: without id maps only container root is (%s map %s)", kind, id, kind, formatMaps(m))
		}
		return fmt.Errorf("user: %s %d is not mapped by the %s map %s", kind, id, kind, formatMaps(m))
	}
	if err := unmapped("uid", o.User.UID, uids); err != nil {
		return err
	}
	for _, g := range append([]uint32{o.User.GID}, o.User.AdditionalGids...) {
		if err := unmapped("gid", g, gids); err != nil {
			return err
		}
	}
	return nil
}

// mapped reports whether a line of m maps the container id id.
func mapped(id uint32, m []specs.LinuxIDMapping) bool {
	for _, l := range m {
		if uint64(id) >= uint64(l.ContainerID) && uint64(id) < uint64(l.ContainerID)+uint64(l.Size) {
			return true
		}
	}
	return false
}

// formatMaps writes m as [container→host size n] lines.
func formatMaps(m []specs.LinuxIDMapping) string {
	var b strings.Builder
	for _, l := range m {
		fmt.Fprintf(&b, "[%d→%d size %d]", l.ContainerID, l.HostID, l.Size)
	}
	return b.String()
}

// Tmpfs is a tmpfs mounted into the container.
type Tmpfs struct {
	Destination string
	// Options are mount(8)'s tmpfs options (size=64m, mode=1777, noexec,
	// ...). nosuid and nodev are always added; without mode=, the mode is
	// the replaced default's, else 1777.
	Options []string
}

// Bind is a host path mounted into the container.
type Bind struct {
	Source, Destination string
	ReadOnly            bool
}

// DefaultEnv is the environment every container starts with.
var DefaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C.UTF-8",
}

// defaultCaps is runc's default capability set.
var defaultCaps = []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}

// maskedPaths and readonlyPaths are runc's defaults.
var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
	"/proc/sched_debug", "/sys/firmware", "/proc/scsi",
}

var readonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// Validate reports options that cannot make a container.
func (o *Options) Validate() error {
	if !filepath.IsAbs(o.Rootfs) {
		return fmt.Errorf("rootfs %q is not an absolute path", o.Rootfs)
	}
	if len(o.Args) == 0 || o.Args[0] == "" {
		return errors.New("no command to run")
	}
	switch o.Network {
	case "", NetworkHost, NetworkNone:
	default:
		return fmt.Errorf("unknown network %q (use host or none)", o.Network)
	}
	for _, b := range o.Binds {
		if !filepath.IsAbs(b.Source) || !filepath.IsAbs(b.Destination) {
			return fmt.Errorf("bind mount %s:%s: both paths must be absolute", b.Source, b.Destination)
		}
	}
	for _, t := range o.Tmpfs {
		if !filepath.IsAbs(t.Destination) || filepath.Clean(t.Destination) == "/" {
			return fmt.Errorf("tmpfs %s: the destination must be an absolute path below /", t.Destination)
		}
	}
	if o.Init != "" && !filepath.IsAbs(o.Init) {
		return fmt.Errorf("init %q is not an absolute path", o.Init)
	}
	for _, kv := range o.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("environment entry %q is not KEY=VALUE", kv)
		}
	}
	if err := o.validateLimits(); err != nil {
		return err
	}
	return o.validateUser()
}

// Spec returns the runtime-spec for a container with the given id.
func Spec(id string, o Options) (*specs.Spec, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	hostname := o.Hostname
	if hostname == "" {
		hostname = id
	}
	cwd := o.Cwd
	if cwd == "" {
		cwd = "/"
	}
	nofile := o.NoFile
	if nofile == 0 {
		nofile = 1024
	}
	caps := append([]string(nil), defaultCaps...)
	procCaps := &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	if o.User.UID != 0 {
		// The bounding set only, as Docker and Podman give a non-root
		// user: its command runs without capabilities.
		procCaps = &specs.LinuxCapabilities{Bounding: caps}
	}
	uids, gids := o.maps()
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: false,
			User: specs.User{
				UID: o.User.UID, GID: o.User.GID,
				AdditionalGids: slices.Clone(o.User.AdditionalGids),
			},
			Args:            o.args(),
			Env:             mergeEnv(DefaultEnv, o.Env),
			Cwd:             cwd,
			Capabilities:    procCaps,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: nofile}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: o.Rootfs, Readonly: true},
		Hostname: hostname,
		Mounts:   mounts(o.Network == NetworkNone, o.Tmpfs),
		Linux: &specs.Linux{
			UIDMappings: slices.Clone(uids),
			GIDMappings: slices.Clone(gids),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.UserNamespace},
			},
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
			CgroupsPath:   o.CgroupsPath,
		},
	}
	if o.Init != "" {
		// After /dev, the tmpfs it is mounted on, and before the
		// user's mounts.
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: InitPath, Type: "bind", Source: o.Init,
			Options: []string{"bind", "ro", "nosuid", "nodev"},
		})
	}
	var user []specs.Mount
	for _, t := range o.Tmpfs {
		if !isDefaultTmpfs(t.Destination) {
			user = append(user, tmpfsMount(t, "1777"))
		}
	}
	for _, b := range o.Binds {
		opts := []string{"rbind", "nosuid", "nodev"}
		if b.ReadOnly {
			// ro alone makes only the top of the bind read-only: every
			// mount under the source (a tmpfs on share/sub, the rootfs's
			// own bind under a home directory) stays writable. rro is
			// mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY), Linux 5.12.
			opts = append(opts, "ro", "rro")
		}
		user = append(user, specs.Mount{Destination: b.Destination, Type: "bind", Source: b.Source, Options: opts})
	}
	// runc mounts in order: a mount under another's destination (a tmpfs
	// on /share/cache, a bind on /share) comes after it, or the outer one
	// would hide it. Docker sorts the same way.
	slices.SortStableFunc(user, func(a, b specs.Mount) int {
		return cmp.Compare(depth(a.Destination), depth(b.Destination))
	})
	s.Mounts = append(s.Mounts, user...)
	o.applyLimits(s, id)
	if o.Network == NetworkNone {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	if !o.SeccompUnconfined {
		sc, err := seccompprofile.GetDefaultProfile(s)
		if err != nil {
			return nil, fmt.Errorf("seccomp profile: %w", err)
		}
		// Docker's profile also admits the native architecture's 32-bit
		// variants (x86 and x32 on amd64). Compiling the filter for three
		// architectures is half of every container start inside runc init,
		// and the compat syscall paths are an attack surface workers do not
		// need: admit the native one only (listed first).
		if len(sc.Architectures) > 1 {
			sc.Architectures = sc.Architectures[:1]
		}
		s.Linux.Seccomp = sc
	}
	return s, nil
}

// args is the container's process: the command, behind the init when
// there is one.
func (o *Options) args() []string {
	if o.Init == "" {
		return o.Args
	}
	return append([]string{InitPath, "--"}, o.Args...)
}

// defaultTmpfs are the tmpfs every container gets, and their modes.
var defaultTmpfs = []struct{ dst, mode string }{{"/tmp", "1777"}, {"/run", "755"}}

func isDefaultTmpfs(dst string) bool {
	for _, d := range defaultTmpfs {
		if filepath.Clean(dst) == d.dst {
			return true
		}
	}
	return false
}

// tmpfsMount is the mount of t, with mode=mode unless t gives one.
func tmpfsMount(t Tmpfs, mode string) specs.Mount {
	opts := []string{"nosuid", "nodev"}
	hasMode := false
	for _, o := range t.Options {
		switch {
		case o == "nosuid" || o == "nodev":
			continue
		case strings.HasPrefix(o, "mode="):
			hasMode = true
		}
		opts = append(opts, o)
	}
	if !hasMode {
		opts = append(opts, "mode="+mode)
	}
	return specs.Mount{Destination: filepath.Clean(t.Destination), Type: "tmpfs", Source: "tmpfs", Options: opts}
}

// depth is how many components the absolute path p has.
func depth(p string) int {
	return strings.Count(strings.TrimSuffix(filepath.Clean(p), "/"), "/")
}

func mounts(ownNetns bool, tmpfs []Tmpfs) []specs.Mount {
	m := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		// No gid=5: group 5 is not mapped in a single-id user namespace.
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
	}
	if ownNetns {
		m = append(m, specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}})
	} else {
		// sysfs can only be mounted by the owner of the network namespace:
		// with the host's network, bind the host's /sys read-only.
		// Recursively (rro), so that no cgroup or other file system under
		// /sys is writable either.
		m = append(m, specs.Mount{Destination: "/sys", Type: "none", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro", "rro"}})
	}
	for _, d := range defaultTmpfs {
		t := Tmpfs{Destination: d.dst}
		for _, u := range tmpfs {
			if filepath.Clean(u.Destination) == d.dst {
				t = u // the last one given wins
			}
		}
		m = append(m, tmpfsMount(t, d.mode))
	}
	return m
}

// mergeEnv returns base with the entries of over added, an entry of over
// replacing the one of base with the same key.
func mergeEnv(base, over []string) []string {
	out := make([]string, 0, len(base)+len(over))
	index := map[string]int{}
	for _, kv := range append(append([]string(nil), base...), over...) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			out[i] = kv
			continue
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	return out
}
