package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/rootfs"
)

const runUsage = `Usage: mrtd run [flags] [--] COMMAND [ARG...]

Run COMMAND in a new rootless container and exit with its status. The
container's stdout and stderr are mrtd's; its stdin is /dev/null. The first
SIGINT or SIGTERM is forwarded to it; a second one kills it. The container
and its bundle are removed when it exits.

Flags:
`

func runFlags(cfg *config.Config, env *stringList) *flag.FlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	containerFlags(fs, cfg, env)
	fs.StringVar(&cfg.Hostname, "hostname", cfg.Hostname, "container host`name` (default: the container id)")
	return fs
}

// containerFlags are the flags of run and of the pool: what one container
// is made from.
func containerFlags(fs *flag.FlagSet, cfg *config.Config, env *stringList) {
	fs.StringVar(&cfg.Rootfs, "rootfs", cfg.Rootfs, "use `PATH` as the rootfs: a directory (used in place, read-only) or a .tar/.tar.zst archive (extracted into the cache); default: the embedded rootfs")
	fs.StringVar(&cfg.Runc, "runc", cfg.Runc, "use the runc binary at `PATH` instead of the embedded one")
	fs.StringVar(&cfg.CacheDir, "cache-dir", cfg.CacheDir, "extract runc and rootfs archives into `DIR`")
	fs.StringVar(&cfg.RuntimeDir, "runtime-dir", cfg.RuntimeDir, "keep runc state and bundles in `DIR`")
	fs.IntVar(&cfg.HostUID, "host-uid", cfg.HostUID, "when run as root, the host `uid` container root maps to")
	fs.IntVar(&cfg.HostGID, "host-gid", cfg.HostGID, "when run as root, the host `gid` container root maps to")
	fs.StringVar(&cfg.Network, "network", cfg.Network, "`host` (share the host's network) or none (loopback only)")
	fs.StringVar(&cfg.Seccomp, "seccomp", cfg.Seccomp, "`default` (Docker's default profile) or unconfined")
	fs.Var(env, "env", "set `KEY=VALUE` in the container (repeatable)")
	fs.StringVar(&cfg.Workdir, "workdir", cfg.Workdir, "working `DIR` inside the container (default /)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "`auto` (the journal under systemd, console on a terminal, else JSON), journal, console or json")
}

func runCommand(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Default(os.Geteuid(), os.Getenv)
	if err != nil {
		return fail(stderr, err)
	}
	var env stringList
	fs := runFlags(&cfg, &env)
	if err := parseFlags(fs, args); errors.Is(err, errHelp) {
		fmt.Fprint(stdout, runUsage)
		printFlags(stdout, fs)
		return 0
	} else if err != nil {
		return fail(stderr, err)
	}
	cfg.Env = env
	cfg.Args = fs.Args()
	if err := cfg.Validate(); err != nil {
		return fail(stderr, err)
	}
	log := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	defer signal.Stop(sigs)

	status, err := run(context.Background(), cfg, log, sigs)
	if err != nil {
		return fail(stderr, err)
	}
	return status
}

// prepared is what a container needs from the cache, held in use.
type prepared struct {
	runc, rootfs string
	// runcVersion and rootfsDigest describe them for mrtd_build_info:
	// "external" for a --runc binary, "dir" for a --rootfs directory.
	runcVersion, rootfsDigest string
	held                      *rootfs.Prepared
}

func (p *prepared) Close() { p.held.Close() }

// prepare finds or unpacks runc and the rootfs that cfg names.
func prepare(cfg config.Config, log logr.Logger) (*prepared, error) {
	kind, err := cfg.RootfsKind()
	if err != nil {
		return nil, err
	}
	var src rootfs.Source // nil: the embedded rootfs
	switch kind {
	case config.RootfsDir:
		src = rootfs.Dir(cfg.Rootfs)
	case config.RootfsArchive:
		src = rootfs.ArchiveFile(cfg.Rootfs)
	}
	held, err := rootfs.Prepare(rootfs.Options{
		Rootfs:    src,
		Runc:      cfg.Runc,
		CacheDir:  cfg.CacheDir,
		RootOwned: os.Geteuid() == 0,
	}, log)
	if err != nil {
		return nil, rootfsError(err)
	}
	p := &prepared{runc: held.Runc, rootfs: held.Rootfs, runcVersion: held.RuncVersion, rootfsDigest: held.RootfsDigest, held: held}
	if os.Geteuid() == 0 {
		if err := container.CheckReachable(p.rootfs, uint32(cfg.HostUID), uint32(cfg.HostGID)); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// cacheDirFixes say what to do about a rootfs.CacheError, in mrtd's flags.
var cacheDirFixes = map[rootfs.Remedy]string{
	rootfs.WritableDir:     "pass --cache-dir with a writable directory",
	rootfs.FreeSpace:       "free space on its filesystem, or pass --cache-dir on another filesystem",
	rootfs.RaiseQuota:      "free space or raise the disk quota, or pass --cache-dir on another filesystem",
	rootfs.CheckFilesystem: "check its filesystem (the kernel log may say more), or pass --cache-dir on another filesystem",
	rootfs.FillOnce:        "fill it once with an mrtd that may write there, or pass --cache-dir with a writable directory",
	rootfs.RootOnlyDir:     "pass a --cache-dir owned by root, in directories only root can write, such as /var/cache/mrtd",
}

// rootfsError adds to an error of package rootfs what to do about it, in
// mrtd's flags and build: the package itself knows neither.
func rootfsError(err error) error {
	var mp *rootfs.MountPointsError
	var dm *rootfs.DigestMismatchError
	var ce *rootfs.CacheError
	switch {
	case errors.Is(err, rootfs.ErrNotEmbedded):
		return fmt.Errorf("%w: build it with `make`, or pass --runc and --rootfs", err)
	case errors.Is(err, rootfs.ErrMalformedDigests):
		return fmt.Errorf("%w: rebuild mrtd with `make`", err)
	case errors.As(err, &mp):
		return &config.UsageError{Err: fmt.Errorf("--rootfs %w", err)}
	case errors.As(err, &dm):
		return fmt.Errorf("%w (rebuild mrtd with `make`, or pass another --rootfs)", err)
	case errors.As(err, &ce):
		return fmt.Errorf("%w (%s)", err, cacheDirFixes[ce.Remedy])
	}
	return err
}

// setup checks the host, prepares runc and the rootfs, and readies the
// runtime directory: what run and the pool both need first. The caller
// closes the returned prepared.
func setup(ctx context.Context, cfg config.Config, log logr.Logger) (*prepared, *container.Runtime, error) {
	if os.Geteuid() == 0 {
		warnLoginHostUID(log, cfg.HostUID, config.PasswdPath)
	}
	if err := container.CheckUserNamespaces("/proc/sys", os.Geteuid() != 0); err != nil {
		return nil, nil, err
	}
	if err := container.CheckRecursiveReadOnly(); err != nil {
		return nil, nil, err
	}
	p, err := prepare(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	rt := &container.Runtime{Runc: p.runc, Dir: cfg.RuntimeDir, Log: log.WithName("container")}
	if err := rt.Init(ctx); err != nil {
		p.Close()
		return nil, nil, err
	}
	return p, rt, nil
}

// hostIDs are the host uid and gid container root maps to: the caller's
// own ids, or the unprivileged --host-uid and --host-gid for root.
func hostIDs(cfg config.Config) (uid, gid uint32) {
	if os.Geteuid() == 0 {
		return uint32(cfg.HostUID), uint32(cfg.HostGID)
	}
	return uint32(os.Geteuid()), uint32(os.Getegid())
}

// run runs cfg's command in a container and returns its exit status.
func run(ctx context.Context, cfg config.Config, log logr.Logger, sigs <-chan os.Signal) (int, error) {
	p, rt, err := setup(ctx, cfg, log)
	if err != nil {
		return -1, err
	}
	defer p.Close()
	uid, gid := hostIDs(cfg)
	id := "mrtd-run-" + randomHex(4)
	opts := container.Options{
		Rootfs:            p.rootfs,
		Args:              cfg.Args,
		Env:               cfg.Env,
		Cwd:               cfg.Workdir,
		Hostname:          cfg.Hostname,
		UID:               uid,
		GID:               gid,
		Network:           cfg.Network,
		SeccompUnconfined: cfg.Seccomp == config.SeccompUnconfined,
		NoFile:            noFileLimit(),
	}
	if err := checkRoot(opts); err != nil {
		return -1, err
	}
	log.V(1).Info("starting container", "containerId", id, "rootfs", p.rootfs, "runc", p.runc)
	return rt.Run(ctx, id, opts, container.Stdio{Stdout: os.Stdout, Stderr: os.Stderr}, sigs)
}

// noFileLimit is the RLIMIT_NOFILE containers get: mrtd's own hard limit
// (an unprivileged process cannot raise it), capped at 1M.
func noFileLimit() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Max == 0 {
		return 1024
	}
	return min(rl.Max, 1<<20)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
