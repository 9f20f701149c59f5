package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/image"
	"github.com/mrt-project/mrt/internal/userns"
	"github.com/mrt-project/mrt/rootfs"
)

// env is what a container needs from the host, held in use until Close:
// runc and the rootfs, prepared in the cache, and the runtime dir.
type env struct {
	*rootfs.Prepared
	runtime *container.Runtime
	// image is the config of the image the rootfs comes from; nil for
	// another source.
	image *image.ImageConfig
	// keep is how containers run as --user in mrtd's user namespace; nil
	// outside it.
	keep *keepID
}

// setup checks the host, prepares runc and the rootfs, and readies the
// runtime directory: what mrtd run and the pool both need first. Errors of
// package rootfs come back as they are: the caller knows the flags that
// fix them.
func setup(ctx context.Context, cfg config.Config, log logr.Logger) (*env, error) {
	root := privileged()
	_, _, inside := userns.Inside()
	if !inside && !isRootUser(cfg.User) {
		if err := checkUser(cfg.User, thisHost()); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("--user %s: mrtd must enter its user namespace first (EnterUserNamespace)", cfg.User)
	}
	if root {
		warnLoginHostUID(log, cfg.HostUID, config.PasswdPath)
	}
	if err := container.CheckUserNamespaces("/proc/sys", !root); err != nil {
		return nil, err
	}
	if err := container.CheckRecursiveReadOnly(); err != nil {
		return nil, err
	}
	kind, err := cfg.RootfsKind()
	if err != nil {
		return nil, err
	}
	var src rootfs.Source // nil: the embedded rootfs
	var img *image.Source
	switch kind {
	case config.RootfsDir:
		src = rootfs.Dir(cfg.Rootfs)
	case config.RootfsArchive:
		src = rootfs.ArchiveFile(cfg.Rootfs)
	case config.RootfsImage:
		ref, err := image.Parse(cfg.Image)
		if err != nil {
			return nil, &config.UsageError{Err: fmt.Errorf("--image: %w", err)}
		}
		img = image.NewSource(ref, imageOptions(cfg, log))
		src = img
	}
	opts := rootfs.Options{
		Rootfs:    src,
		Runc:      cfg.Runc,
		CacheDir:  cfg.CacheDir,
		RootOwned: root,
	}
	var keep *keepID
	if inside {
		// The user is looked up in the tree as the image made it; the
		// containers get a copy whose owners go through the maps. Such
		// copies, like images' trees, are left to mrtd prune: a start
		// that removed another --user's would make alternating users
		// extract again every time.
		opts.Map = func(tree string) (*rootfs.IDMap, error) {
			k, err := planKeepID(cfg.User, tree)
			if err != nil {
				return nil, err
			}
			keep = k
			return k.idMap(), nil
		}
	}
	p, err := rootfs.Prepare(opts, log)
	if err != nil {
		return nil, err
	}
	if root {
		if err := container.CheckReachable(p.Rootfs, uint32(cfg.HostUID), uint32(cfg.HostGID)); err != nil {
			p.Close()
			return nil, err
		}
	}
	rt := &container.Runtime{Runc: p.Runc, Dir: cfg.RuntimeDir, Rootless: inside, Log: log.WithName("container")}
	if err := rt.Init(ctx); err != nil {
		p.Close()
		return nil, err
	}
	e := &env{Prepared: p, runtime: rt, keep: keep}
	if keep != nil {
		log.Info("running the command as --user in mrtd's user namespace: that uid is you on the host, container root and the other ids are your subordinate ids",
			"user", cfg.User, "uid", keep.user.UID, "gid", keep.user.GID)
	}
	if img != nil {
		ic := img.Config()
		e.image = &ic
	}
	return e, nil
}

// imageOptions are how cfg's images are cached and fetched: blobs under
// <cache-dir>/images.
func imageOptions(cfg config.Config, log logr.Logger) image.Options {
	maxSize, _ := config.ParseSize(cfg.MaxImageSize) // Validate checked it
	return image.Options{
		Dir:      filepath.Join(cfg.CacheDir, "images"),
		Policy:   image.Policy(cfg.Pull),
		Platform: cfg.Platform,
		Insecure: !cfg.TLSVerify,
		MaxSize:  maxSize,
		AuthFile: cfg.AuthFile,
		Log:      log.WithName("image"),
	}
}

// Pull fetches the image cfg names into the cache (mrtd pull) and returns
// its manifest digest. progress, when set, is told how each blob goes.
func Pull(ctx context.Context, cfg config.Config, log logr.Logger, progress func(image.Progress)) (string, error) {
	ref, err := image.Parse(cfg.Image)
	if err != nil {
		return "", &config.UsageError{Err: err}
	}
	o := imageOptions(cfg, log)
	o.Progress = progress
	return image.Pull(ctx, ref, o)
}

// Stdio are the standard streams of RunOne's container.
type Stdio = container.Stdio

// RunOne runs cfg's command in a container in the foreground (mrtd run)
// and returns its exit status. The first signal on sigs is forwarded to
// it, a later one kills it.
func RunOne(ctx context.Context, cfg config.Config, log logr.Logger, stdio Stdio, sigs <-chan os.Signal) (int, error) {
	warm := warmStart()
	defer func() { <-warm }()
	e, err := setup(ctx, cfg, log)
	if err != nil {
		return -1, err
	}
	defer e.Close()
	o, err := containerOptions(cfg, e, log)
	if err != nil {
		return -1, err
	}
	o.Hostname = cfg.Hostname
	if err := addMounts(&o, e.tree(), cfg.Tmpfs, nil, protected{}); err != nil {
		return -1, err
	}
	if err := checkRoot(o); err != nil {
		return -1, err
	}
	id := "mrtd-run-" + randomHex(4)
	log.V(1).Info("starting container", "containerId", id, "rootfs", e.Rootfs, "runc", e.Runc)
	return e.runtime.Run(ctx, id, o, stdio, sigs)
}

// hostIDs are the host uid and gid container root maps to: the caller's
// own ids, or the unprivileged --host-uid and --host-gid for root.
func hostIDs(cfg config.Config) (uid, gid uint32) {
	if privileged() {
		return uint32(cfg.HostUID), uint32(cfg.HostGID)
	}
	return uint32(os.Geteuid()), uint32(os.Getegid())
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

// warnLoginHostUID warns when container root maps to a login user's uid.
func warnLoginHostUID(log logr.Logger, uid int, passwdPath string) {
	if name, ok := config.LoginUser(uid, passwdPath); ok {
		warn(log, "--host-uid is a login user's uid: the containers can write that user's files; pick an unused uid unless that is meant",
			"hostUid", uid, "user", name)
	}
}

// warn logs msg at zap's warning level (journald priority 4); logr has no
// such level, so another logger gets an error without an error.
func warn(log logr.Logger, msg string, kv ...any) {
	if u, ok := log.GetSink().(zapr.Underlier); ok {
		u.GetUnderlying().Sugar().Warnw(msg, kv...)
		return
	}
	log.Error(nil, msg, kv...)
}
