package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Network and seccomp modes.
const (
	NetworkHost = "host"
	NetworkNone = "none"

	SeccompDefault    = "default"
	SeccompUnconfined = "unconfined"
)

// DefaultHostID is the host uid and gid container root maps to when mrtd
// runs as root: nobody and nogroup on Debian.
const DefaultHostID = 65534

// Config is what one container is made from: the container of mrtd run, and
// the template of every worker of the pool.
type Config struct {
	// Rootfs is a directory, a .tar or .tar.zst archive, or "" for the
	// embedded rootfs (or Image).
	Rootfs string
	// Image is an image reference: a registry's (unqualified names are
	// docker.io/library/...), oci:PATH[:TAG] or docker-archive:PATH.
	Image string
	// Pull is the image pull policy: missing, always or never.
	Pull string
	// Platform chooses an image of a multi-platform index: os/arch[/variant];
	// the host's when empty.
	Platform string
	// TLSVerify false allows a registry over plain HTTP or with an
	// unverified certificate.
	TLSVerify bool
	// AuthFile, when set, is the Podman-style auth file read first for
	// registry credentials, in place of $REGISTRY_AUTH_FILE (--authfile,
	// which mrtd login --authfile writes); "" reads the default ones.
	AuthFile string
	// MaxImageSize bounds what flattening an image may write, against
	// decompression bombs: a size such as 8G.
	MaxImageSize string
	// User is the user the command runs as: UID[:GID] or NAME; "" is the
	// image's USER, which runs as container root (see daemon).
	User string
	// Runc is a runc binary to use instead of the embedded one.
	Runc string
	// CacheDir holds extracted assets; RuntimeDir holds runc state and
	// bundles.
	CacheDir   string
	RuntimeDir string
	// HostUID and HostGID are what container root maps to when mrtd runs as
	// root.
	HostUID, HostGID int
	Network          string
	Seccomp          string
	// Env entries are KEY=VALUE.
	Env      []string
	Workdir  string
	Hostname string
	// Tmpfs are the --tmpfs DST[:OPTIONS] mounts, besides the default
	// ones (/tmp, /run and /var/tmp); see ParseTmpfs.
	Tmpfs []string
	// Init runs a minimal init, which mrtd carries, as the container's
	// pid 1: it forwards signals to the command, reaps orphans and exits
	// with the command's status (--init, as docker run --init).
	Init bool
	// Limits are the resource limits of the command: rlimits, OOM score
	// and nice value, which need no cgroups, and memory, CPU and pids
	// limits, which need a delegated cgroup v2 subtree (see limits.go).
	Limits
	LogLevel string
	// LogFormat is auto, journal, console or json.
	LogFormat string
	// Args is the command to run.
	Args []string
}

// Default returns the defaults for a process with the given euid and
// environment lookup (os.LookupEnv in mrtd).
func Default(euid int, getenv func(string) string) (Config, error) {
	c := Config{
		Pull:         PullMissing,
		TLSVerify:    true,
		MaxImageSize: "8G",
		HostUID:      DefaultHostID,
		HostGID:      DefaultHostID,
		Network:      NetworkHost,
		Seccomp:      SeccompDefault,
		LogLevel:     "info",
		LogFormat:    "auto",
	}
	if euid == 0 {
		// As for a system service (systemd's CacheDirectory= and
		// RuntimeDirectory=): /root is not reachable by the unprivileged
		// uid that container root maps to.
		c.CacheDir = "/var/cache/mrtd"
		c.RuntimeDir = "/run/mrtd"
		return c, nil
	}
	if x := getenv("XDG_CACHE_HOME"); filepath.IsAbs(x) {
		c.CacheDir = filepath.Join(x, "mrtd")
	} else if h := getenv("HOME"); filepath.IsAbs(h) {
		c.CacheDir = filepath.Join(h, ".cache", "mrtd")
	}
	if x := getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(x) {
		c.RuntimeDir = filepath.Join(x, "mrtd")
	} else if c.CacheDir != "" {
		c.RuntimeDir = filepath.Join(c.CacheDir, "run")
	}
	return c, nil
}

// UsageError is a configuration mistake the user fixes by changing flags or
// the config file: mrtd exits 2.
type UsageError struct {
	Err error
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Pull policies, as Podman's --pull.
const (
	PullMissing = "missing" // pull when the image is not in the cache
	PullAlways  = "always"  // resolve the reference at every start
	PullNever   = "never"   // only the cache
)

// RootfsKind says what Config.Rootfs names.
type RootfsKind int

const (
	RootfsEmbedded RootfsKind = iota
	RootfsDir
	RootfsArchive
	RootfsImage
)

// Validate checks c and returns a *UsageError naming the first problem and
// its fix. It makes a relative cache or runtime dir absolute: runc reads
// the rootfs path from a bundle elsewhere, and the dirs are checked up to
// "/".
func (c *Config) Validate() error {
	// An image brings its own command (Entrypoint and Cmd).
	if c.Image == "" && (len(c.Args) == 0 || c.Args[0] == "") {
		return usagef("no command given: put it after --, as in `mrtd run -- python3 -V`")
	}
	if c.CacheDir == "" {
		return usagef("no cache dir: set HOME or XDG_CACHE_HOME, or pass --cache-dir")
	}
	if c.RuntimeDir == "" {
		return usagef("no runtime dir: set XDG_RUNTIME_DIR, or pass --runtime-dir")
	}
	for _, d := range []*string{&c.CacheDir, &c.RuntimeDir} {
		abs, err := filepath.Abs(*d)
		if err != nil {
			return usagef("%s: %v: pass an absolute path", *d, err)
		}
		*d = abs
	}
	switch c.Network {
	case NetworkHost, NetworkNone:
	default:
		return usagef("unknown --network %q: use host or none", c.Network)
	}
	switch c.Pull {
	case PullMissing, PullAlways, PullNever:
	default:
		return usagef("unknown --pull %q: use missing, always or never", c.Pull)
	}
	if _, err := ParseSize(c.MaxImageSize); err != nil {
		return usagef("--max-image-size %q: %v: use a size such as 8G or 500M", c.MaxImageSize, err)
	}
	if c.Platform != "" && !validPlatform(c.Platform) {
		return usagef("--platform %q: use os/arch or os/arch/variant, such as linux/amd64 or linux/arm64/v8", c.Platform)
	}
	if c.AuthFile != "" {
		// Checked now, not at the first pull: a mistyped path would
		// otherwise fall back to the default files unnoticed.
		fi, err := os.Stat(c.AuthFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return usagef("--authfile %s does not exist: create it with `mrtd login --authfile %s HOST`, or fix the path", c.AuthFile, c.AuthFile)
		case err != nil:
			return usagef("--authfile %s: %v", c.AuthFile, errors.Unwrap(err))
		case fi.IsDir():
			return usagef("--authfile %s is a directory: pass the auth file (such as %s)", c.AuthFile, filepath.Join(c.AuthFile, "auth.json"))
		}
	}
	switch c.Seccomp {
	case SeccompDefault, SeccompUnconfined:
	default:
		return usagef("unknown --seccomp %q: use default or unconfined", c.Seccomp)
	}
	if c.HostUID < 1 || c.HostUID > 1<<32-2 || c.HostGID < 1 || c.HostGID > 1<<32-2 {
		return usagef("--host-uid and --host-gid must be unprivileged ids (1 to 4294967294), got %d and %d", c.HostUID, c.HostGID)
	}
	for _, kv := range c.Env {
		if !IsKeyValue(kv) {
			return usagef("--env %q is not KEY=VALUE", kv)
		}
	}
	if c.Hostname != "" && !validHostname(c.Hostname) {
		return usagef("--hostname %q is not a host name: use dot-separated labels of letters, digits and inner hyphens, each 1 to %d characters, at most %d in all (such as worker-1 or w1.example)", c.Hostname, maxLabel, MaxHostname)
	}
	seen := map[string]bool{}
	for _, v := range c.Tmpfs {
		m, err := ParseTmpfs(v)
		if err != nil {
			return err
		}
		if seen[m.Destination] {
			return usagef("--tmpfs %s is given twice: keep one", m.Destination)
		}
		seen[m.Destination] = true
	}
	if c.Workdir != "" && !filepath.IsAbs(c.Workdir) {
		return usagef("--workdir %q is not an absolute path", c.Workdir)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return usagef("unknown --log-level %q: use debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "auto", "journal", "console", "json":
	default:
		return usagef("unknown --log-format %q: use auto, journal, console or json", c.LogFormat)
	}
	if c.Runc != "" {
		fi, err := os.Stat(c.Runc)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return usagef("--runc %s is not an executable file", c.Runc)
		}
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if _, err := c.RootfsKind(); err != nil {
		return err
	}
	return nil
}

// RootfsKind classifies Config.Rootfs, failing with a *UsageError when it
// names nothing usable.
func (c *Config) RootfsKind() (RootfsKind, error) {
	if c.Image != "" {
		if c.Rootfs != "" {
			return 0, usagef("--image and --rootfs exclude each other: pass one of them")
		}
		return RootfsImage, nil
	}
	if c.Rootfs == "" {
		return RootfsEmbedded, nil
	}
	fi, err := os.Stat(c.Rootfs)
	if errors.Is(err, os.ErrNotExist) {
		return 0, usagef("--rootfs %s does not exist: pass a directory or a .tar/.tar.zst archive", c.Rootfs)
	}
	if err != nil {
		return 0, usagef("--rootfs %s: %v", c.Rootfs, errors.Unwrap(err))
	}
	if fi.IsDir() {
		return RootfsDir, nil
	}
	name := strings.ToLower(c.Rootfs)
	if fi.Mode().IsRegular() && (strings.HasSuffix(name, ".tar") || strings.HasSuffix(name, ".tar.zst") || strings.HasSuffix(name, ".tzst")) {
		return RootfsArchive, nil
	}
	return 0, usagef("--rootfs %s is neither a directory nor a .tar/.tar.zst archive", c.Rootfs)
}

// Pool configuration: what `mrtd` (without a subcommand) runs.
type Pool struct {
	Workers     int
	Instance    string
	Mounts      []string // SRC[:DST[:ro]]
	EnvFile     string
	Restart     string
	StopSignal  string
	StopTimeout time.Duration
	BackoffMin  time.Duration
	BackoffMax  time.Duration
	// Standby keeps each worker's next container created (runc create)
	// while the current one runs, so that a restart costs a runc start.
	Standby bool
	// MetricsAddr, when set, serves Prometheus metrics at /metrics.
	MetricsAddr string
	// Health is the workers' health check (see health.go).
	Health Health
}

// MaxWorkers is the largest pool mrtd runs on one host.
const MaxWorkers = 512

// Restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
)

// DefaultPool returns the pool defaults.
func DefaultPool() Pool {
	return Pool{
		Workers:     4,
		Instance:    "mrtd",
		Restart:     RestartAlways,
		StopSignal:  "TERM",
		StopTimeout: 10 * time.Second,
		BackoffMin:  100 * time.Millisecond,
		BackoffMax:  time.Minute,
		Health:      DefaultHealth(),
	}
}

// Mount is a parsed --mount.
type Mount struct {
	Source, Destination string
	ReadOnly            bool
}

// ParseMount parses SRC[:DST[:ro]]; DST defaults to SRC.
func ParseMount(s string) (Mount, error) {
	return parseMount(s, fmt.Sprintf("--mount %q", s))
}

// parseMount is ParseMount, its errors beginning with where.
func parseMount(s, where string) (Mount, error) {
	parts := strings.Split(s, ":")
	m := Mount{Source: parts[0], Destination: parts[0]}
	if len(parts) > 3 {
		return m, usagef("%s: use SRC[:DST[:ro]]", where)
	}
	if len(parts) >= 2 && parts[1] != "" {
		m.Destination = parts[1]
	}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			m.ReadOnly = true
		case "rw":
		default:
			return m, usagef("%s: the third field must be ro or rw", where)
		}
	}
	if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Destination) {
		return m, usagef("%s: SRC and DST must be absolute paths", where)
	}
	if _, err := os.Stat(m.Source); err != nil {
		return m, usagef("%s: source %s does not exist: create it first", where, m.Source)
	}
	m.Source, m.Destination = filepath.Clean(m.Source), filepath.Clean(m.Destination)
	return m, nil
}

// Tmpfs is a parsed --tmpfs.
type Tmpfs struct {
	Destination string
	// Options are mount(8)'s tmpfs options, as given: size=64m, mode=1777,
	// nr_inodes, uid, gid, noexec, nosuid, nodev.
	Options []string
}

// ParseTmpfs parses DST[:OPTIONS], OPTIONS being comma-separated tmpfs
// options of mount(8): size=N[k|m|g|%], nr_inodes=N[k|m|g], mode=OCTAL,
// uid=N, gid=N, noexec, nosuid, nodev. Others are refused: the container's
// mounts are nosuid and nodev anyway, and an option the kernel refuses
// would fail every start.
func ParseTmpfs(s string) (Tmpfs, error) {
	dst, opts, _ := strings.Cut(s, ":")
	t := Tmpfs{Destination: filepath.Clean(dst)}
	if !filepath.IsAbs(dst) {
		return t, usagef("--tmpfs %q: DST must be an absolute path, as in --tmpfs /data:size=64m", s)
	}
	if t.Destination == "/" {
		return t, usagef("--tmpfs %q: the rootfs itself cannot be a tmpfs: pick a directory such as /data", s)
	}
	if opts == "" {
		return t, nil
	}
	seen := map[string]bool{}
	for _, o := range strings.Split(opts, ",") {
		key, val, hasVal := strings.Cut(o, "=")
		if seen[key] {
			return t, usagef("--tmpfs %q: %s is given twice", s, key)
		}
		seen[key] = true
		var ok bool
		switch key {
		case "size":
			ok = hasVal && validSize(val, true)
		case "nr_inodes":
			ok = hasVal && validSize(val, false)
		case "mode":
			n, err := strconv.ParseUint(val, 8, 32)
			ok = hasVal && err == nil && n <= 0o7777
		case "uid", "gid":
			_, err := strconv.ParseUint(val, 10, 32)
			ok = hasVal && err == nil
		case "noexec", "nosuid", "nodev":
			ok = !hasVal
		default:
			return t, usagef("--tmpfs %q: unknown option %q: use size, nr_inodes, mode, uid, gid, noexec, nosuid or nodev", s, o)
		}
		if !ok {
			return t, usagef("--tmpfs %q: bad option %q: use size=N[k|m|g|%%], nr_inodes=N[k|m|g], mode=OCTAL, uid=N, gid=N, or noexec, nosuid, nodev without a value", s, o)
		}
		t.Options = append(t.Options, o)
	}
	return t, nil
}

// validSize accepts a tmpfs size: digits, then k, m or g (either case), or
// % when percent.
func validSize(v string, percent bool) bool {
	if n := len(v); n > 1 && (strings.ContainsRune("kKmMgG", rune(v[n-1])) || percent && v[n-1] == '%') {
		v = v[:n-1]
	}
	_, err := strconv.ParseUint(v, 10, 64)
	return err == nil
}

// ParseSignal accepts TERM, SIGTERM, term or 15.
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(strings.TrimPrefix(strings.ToUpper(s), "SIG"))
	if sig := unix.SignalNum("SIG" + name); sig != 0 {
		return sig, nil
	}
	return 0, usagef("--stop-signal %q is not a signal: use a name like TERM or a number", s)
}

// ParseSize reads a size in bytes with an optional K, M, G or T suffix
// (powers of 1024; a trailing B or iB is allowed): 8G, 500M, 1048576.
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		case 'T':
			mult, t = 1<<40, t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, errors.New("not a positive size")
	}
	return n * mult, nil
}

// validPlatform accepts os/arch and os/arch/variant.
func validPlatform(p string) bool {
	parts := strings.Split(p, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	for _, s := range parts {
		if s == "" {
			return false
		}
	}
	return true
}

// IsKeyValue reports whether kv is an environment entry: KEY=VALUE with a
// non-empty KEY (VALUE may be empty).
func IsKeyValue(kv string) bool {
	k, _, ok := strings.Cut(kv, "=")
	return ok && k != ""
}

// ReadEnvFile reads KEY=VALUE lines; blank lines and lines starting with #
// are skipped.
func ReadEnvFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--env-file %s: %v", path, errors.Unwrap(err))
	}
	var env []string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !IsKeyValue(line) {
			return nil, usagef("--env-file %s line %d: %q is not KEY=VALUE", path, i+1, line)
		}
		env = append(env, line)
	}
	return env, nil
}

// Validate checks the pool settings.
func (p *Pool) Validate() error {
	return p.validate(func(key string) string { return "--" + key })
}

// validate is Validate, key naming a setting in the errors of templates.
func (p *Pool) validate(key func(string) string) error {
	if p.Workers < 1 || p.Workers > MaxWorkers {
		return usagef("--workers %d: use 1 to %d", p.Workers, MaxWorkers)
	}
	if err := checkInstance(p.Instance); err != nil {
		return err
	}
	switch p.Restart {
	case RestartAlways, RestartOnFailure:
	default:
		return usagef("unknown --restart %q: use always or on-failure", p.Restart)
	}
	if _, err := ParseSignal(p.StopSignal); err != nil {
		return err
	}
	switch {
	case p.StopTimeout < 0:
		return usagef("--stop-timeout %v is negative", p.StopTimeout)
	case p.BackoffMin <= 0:
		return usagef("--backoff-min %v: use a positive duration such as 100ms", p.BackoffMin)
	case p.BackoffMax < p.BackoffMin:
		return usagef("--backoff-max %v is below --backoff-min %v: raise it", p.BackoffMax, p.BackoffMin)
	}
	for _, m := range p.Mounts {
		if err := p.checkMount(key("mount"), m); err != nil {
			return err
		}
	}
	if p.MetricsAddr != "" {
		if err := checkListenAddr(p.MetricsAddr); err != nil {
			return err
		}
	}
	return p.Health.Validate()
}
