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
	"path/filepath"

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
	refs                      []*rootfs.Ref
	cache                     *rootfs.Cache
}

func (p *prepared) Close() {
	for _, r := range p.refs {
		r.Close()
	}
}

// prepare finds or unpacks runc and the rootfs that cfg names.
func prepare(cfg config.Config, log logr.Logger) (*prepared, error) {
	rootless := os.Geteuid() != 0
	kind, err := cfg.RootfsKind()
	if err != nil {
		return nil, err
	}
	cache := &rootfs.Cache{
		Dir: cfg.CacheDir,
		// setuid and setgid bits are useless under no_new_privs, and
		// harmful on the host: drop them always.
		DropSetID: true,
		Log:       log.WithName("assets"),
	}
	if !rootless {
		// Root's containers run what the cache holds, so no host uid but
		// root may change it, not even the unprivileged one container root
		// maps to: that uid sees the tree as owned by the overflow uid, and
		// reads and runs it through its "other" permission bits.
		cache.RootOwned = true
	}
	p := &prepared{cache: cache, runc: cfg.Runc, runcVersion: "external", rootfsDigest: "dir"}

	emb, err := rootfs.Builtin()
	if err != nil && (cfg.Runc == "" || kind == config.RootfsEmbedded) {
		return nil, err
	}
	if p.runc == "" {
		ref, err := cache.Runc(emb.Runc, emb.RuncDigest)
		if err != nil {
			return nil, err
		}
		p.refs = append(p.refs, ref)
		p.runc = ref.Path
		p.runcVersion = emb.RuncVersion
	}

	var archive *rootfs.Archive
	switch kind {
	case config.RootfsDir:
		if p.rootfs, err = filepath.Abs(cfg.Rootfs); err != nil {
			p.Close()
			return nil, err
		}
		if err := checkMountPoints(p.rootfs); err != nil {
			p.Close()
			return nil, err
		}
	case config.RootfsArchive:
		if archive, err = rootfs.FileArchive(cfg.Rootfs); err != nil {
			p.Close()
			return nil, err
		}
	default:
		archive = emb.RootfsArchive()
	}
	if archive != nil {
		ref, err := cache.Rootfs(archive)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.refs = append(p.refs, ref)
		p.rootfs = ref.Path
		p.rootfsDigest = archive.Digest
	}
	if len(p.refs) > 0 {
		// Remove what no process uses, but keep this binary's own assets
		// even when this run overrides them: the next run will want them.
		keep := []string{p.rootfs}
		for _, r := range p.refs {
			keep = append(keep, r.Path)
		}
		if emb != nil {
			keep = append(keep, filepath.Join(cache.Dir, "runc-"+emb.RuncDigest),
				filepath.Join(cache.Dir, "rootfs", cache.Key(emb.RootfsDigest)))
		}
		if err := cache.Prune(keep...); err != nil {
			log.Error(err, "pruning the cache")
		}
	}
	if !rootless {
		if err := container.CheckReachable(p.rootfs, uint32(cfg.HostUID), uint32(cfg.HostGID)); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// checkMountPoints reports the mount points a rootfs directory lacks.
func checkMountPoints(dir string) error {
	var missing []string
	for _, mp := range rootfs.MountPoints {
		if fi, err := os.Stat(filepath.Join(dir, mp)); err != nil || !fi.IsDir() {
			missing = append(missing, "/"+mp)
		}
	}
	if len(missing) > 0 {
		return &config.UsageError{Err: fmt.Errorf("--rootfs %s lacks the mount points %v: create them as empty directories", dir, missing)}
	}
	return nil
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
