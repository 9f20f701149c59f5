package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// StringList is a repeatable flag.
type StringList []string

func (s *StringList) String() string     { return strings.Join(*s, ",") }
func (s *StringList) Set(v string) error { *s = append(*s, v); return nil }

// ErrHelp is returned by ParseFlags when --help was asked for.
var ErrHelp = errors.New("help requested")

// ParseFlags parses args with fs, turning the flag package's errors into
// one-line *UsageError values that name the fix.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return ErrHelp
	}
	if err != nil {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			msg = fmt.Sprintf("unknown flag --%s", strings.TrimPrefix(name, "-"))
		}
		help := "mrtd --help"
		if fs.Name() != "mrtd" {
			help = "mrtd " + fs.Name() + " --help"
		}
		return &UsageError{Err: fmt.Errorf("%s (see `%s`)", msg, help)}
	}
	return nil
}

// RunFlags declares the flags of mrtd run into a new FlagSet.
func RunFlags(cfg *Config, env *StringList) *flag.FlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	containerFlags(fs, cfg, env)
	fs.StringVar(&cfg.Hostname, "hostname", cfg.Hostname, "container host`name` (default: the container id)")
	return fs
}

// containerFlags are the flags of run and of the pool: what one container
// is made from.
func containerFlags(fs *flag.FlagSet, cfg *Config, env *StringList) {
	fs.StringVar(&cfg.Rootfs, "rootfs", cfg.Rootfs, "use `PATH` as the rootfs: a directory (used in place, read-only) or a .tar/.tar.zst archive (extracted into the cache); default: the embedded rootfs")
	fs.StringVar(&cfg.Image, "image", cfg.Image, "run the image `REF` (registry/repo:tag, @sha256:..., oci:PATH[:TAG], docker-archive:PATH; unqualified names are docker.io/library/...) instead of the embedded rootfs; a command after -- replaces its Cmd")
	fs.StringVar(&cfg.Pull, "pull", cfg.Pull, "pull the image `missing` from the cache, always, or never (the cache only)")
	fs.StringVar(&cfg.Platform, "platform", cfg.Platform, "the `os/arch[/variant]` to pull from a multi-platform image (default: this host's)")
	fs.BoolVar(&cfg.TLSVerify, "tls-verify", cfg.TLSVerify, "verify the registry's TLS certificate; false also allows plain HTTP")
	fs.StringVar(&cfg.AuthFile, "authfile", cfg.AuthFile, "read registry credentials from the auth `FILE` first, in place of $REGISTRY_AUTH_FILE (mrtd login --authfile writes it)")
	fs.StringVar(&cfg.MaxImageSize, "max-image-size", cfg.MaxImageSize, "the most an image may unpack to, against decompression bombs: a `SIZE` such as 8G")
	fs.StringVar(&cfg.User, "user", cfg.User, "run the command as `UID[:GID]` or NAME of the image; 0 or root is container root, which is you (default: the image's USER, run as container root)")
	fs.StringVar(&cfg.Runc, "runc", cfg.Runc, "use the runc binary at `PATH` instead of the embedded one")
	fs.StringVar(&cfg.CacheDir, "cache-dir", cfg.CacheDir, "extract runc and rootfs archives into `DIR`")
	fs.StringVar(&cfg.RuntimeDir, "runtime-dir", cfg.RuntimeDir, "keep runc state and bundles in `DIR`")
	fs.IntVar(&cfg.HostUID, "host-uid", cfg.HostUID, "when run as root, the host `uid` container root maps to")
	fs.IntVar(&cfg.HostGID, "host-gid", cfg.HostGID, "when run as root, the host `gid` container root maps to")
	fs.StringVar(&cfg.Network, "network", cfg.Network, "`host` (share the host's network) or none (loopback only)")
	fs.StringVar(&cfg.Seccomp, "seccomp", cfg.Seccomp, "`default` (Docker's default profile) or unconfined")
	fs.Var(env, "env", "set `KEY=VALUE` in the container (repeatable); in the pool, VALUE may be a template rendered for each worker, such as {{add 9600 .Worker}}")
	fs.Var((*StringList)(&cfg.Tmpfs), "tmpfs", "mount a tmpfs on `DST[:OPTIONS]` (repeatable): OPTIONS as mount(8)'s, of size=N[k|m|g|%], nr_inodes, mode (default 1777), uid, gid, noexec, nosuid, nodev; /tmp, /run and /var/tmp are tmpfs already, --tmpfs /tmp:size=64m replaces one; a DST missing in the rootfs is created in a tree mrtd extracted, and an error in a --rootfs DIR")
	fs.StringVar(&cfg.Workdir, "workdir", cfg.Workdir, "working `DIR` inside the container (default /)")
	fs.BoolVar(&cfg.Init, "init", cfg.Init, "run a minimal init, carried by mrtd, as the container's pid 1: it forwards signals to the command, reaps orphaned processes and exits with the command's status")
	l := &cfg.Limits
	fs.Var((*StringList)(&l.Ulimits), "ulimit", "set the rlimit `NAME=SOFT[:HARD]` (repeatable): nofile, nproc, as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, rss, rtprio, rttime, sigpending, stack; -1 is unlimited")
	fs.Var((*optionalInt)(&l.OOMScoreAdj), "oom-score-adj", "the command's OOM score adjustment, `-1000 to 1000`, at least mrtd's own unless mrtd has CAP_SYS_RESOURCE; default mrtd's")
	fs.Var((*optionalInt)(&l.Nice), "nice", "the command's nice `value`, -20 to 19, at least mrtd's own (lowering it needs CAP_SYS_NICE, which no container has); default mrtd's")
	fs.StringVar(&l.Memory, "memory", l.Memory, "memory limit, a `SIZE` such as 512M (needs a delegated cgroup v2 subtree: a systemd user service with Delegate=yes)")
	fs.StringVar(&l.CPUs, "cpus", l.CPUs, "CPU limit, a `number` of CPUs such as 1.5 (needs a delegated cgroup v2 subtree)")
	fs.IntVar(&l.PidsLimit, "pids-limit", l.PidsLimit, "most processes the container may have, `N`; 0 is no limit (needs a delegated cgroup v2 subtree)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "`auto` (the journal under systemd, console on a terminal, else JSON), journal, console or json")
}
