package daemon

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/image"
	"github.com/mrt-project/mrt/internal/userns"
	"github.com/mrt-project/mrt/rootfs"
)

// containerOptions is the container cfg describes on rootfs: the one of
// mrtd run, and the template of every worker. With an image's config img,
// the image's Env comes before cfg's, its WorkingDir applies unless
// --workdir is given, and the command is its Entrypoint followed by cfg's
// command, or by its Cmd when cfg gives none (as docker run does).
func containerOptions(cfg config.Config, e *env, log logr.Logger) (container.Options, error) {
	uid, gid := hostIDs(cfg)
	img := e.image
	o := container.Options{
		Rootfs:            e.Rootfs,
		Args:              cfg.Args,
		Env:               cfg.Env,
		Cwd:               cfg.Workdir,
		UID:               uid,
		GID:               gid,
		Network:           cfg.Network,
		SeccompUnconfined: cfg.Seccomp == config.SeccompUnconfined,
		NoFile:            noFileLimit(),
	}
	lim, err := containerLimits(cfg.Limits, thisLimitHost())
	if err != nil {
		return o, err
	}
	o.Limits = lim
	var base []string // the environment below the image's
	if k := e.keep; k != nil {
		// The user is the one mrtd entered its namespace for: a reload
		// that names another takes effect on restart, as mrtd logs.
		o.UID, o.GID = 0, 0
		o.IDMaps = &container.IDMaps{UID: k.maps.UID, GID: k.maps.GID}
		o.User = k.user
		if k.user.UID != 0 {
			base = []string{"HOME=" + k.home}
		}
		o.Env = append(slices.Clone(base), cfg.Env...)
	}
	if cfg.Init {
		bin, err := e.Prepared.Init()
		if errors.Is(err, rootfs.ErrNoInit) {
			err = fmt.Errorf("%w: build it with `make`", err)
		}
		if err != nil {
			return o, fmt.Errorf("--init: %w", err)
		}
		o.Init = bin
	}
	if img == nil {
		return o, nil
	}
	o.Env = append(append(base, img.Env...), cfg.Env...)
	if o.Cwd == "" {
		o.Cwd = img.WorkingDir
	}
	args := cfg.Args
	if len(args) == 0 {
		args = img.Cmd
	}
	o.Args = append(slices.Clone(img.Entrypoint), args...)
	if len(o.Args) == 0 {
		return o, &config.UsageError{Err: fmt.Errorf("image %s has no Entrypoint or Cmd: put the command after --", img.Ref)}
	}
	if u := img.User; cfg.User == "" && !isRootUser(u) {
		// runc started by an unprivileged user needs container root
		// mapped to that user, and no other uid is mapped.
		log.Info("the image's USER runs as container root, which is the host user mrtd maps it to", "image", img.Ref, "imageUser", u)
	}
	return o, nil
}

// workerTemplate is every worker's container, from the settings, on e's
// rootfs. It checks the command, the working directory and the mounts
// against the rootfs and the host: what would make every start fail is a
// usage error before any worker starts.
func workerTemplate(st Settings, e *env, log logr.Logger) (container.Options, error) {
	o, err := containerOptions(st.Container, e, log)
	if err != nil {
		return container.Options{}, err
	}
	prot := protected{exec: []string{st.Container.CacheDir, e.Rootfs}, runtimeDir: st.Container.RuntimeDir}
	if st.Container.Runc != "" {
		prot.exec = append(prot.exec, st.Container.Runc)
	}
	if err := addMounts(&o, e.tree(), st.Container.Tmpfs, st.Pool.Mounts, prot); err != nil {
		return container.Options{}, err
	}
	if err := checkRoot(o); err != nil {
		var cmd *container.CommandError
		if errors.As(err, &cmd) {
			// Every worker would fail the same way: a usage error, not a
			// crash loop.
			return container.Options{}, &config.UsageError{Err: err}
		}
		return container.Options{}, err
	}
	return o, nil
}

// tree is e's rootfs as its mounts see it.
func (e *env) tree() tree {
	return tree{dir: e.Rootfs, create: e.RootfsDigest != "dir", rootOwned: privileged()}
}

// addMounts adds to o the tmpfs (--tmpfs, and /var/tmp by default) and the
// binds (--mount) and checks their mount points in t, creating the missing
// ones where t allows it. A bind whose SRC is a template keeps SRC as
// given, for perWorker to render and check for each worker.
func addMounts(o *container.Options, t tree, tmpfs, mounts []string, p protected) error {
	dsts := map[string]string{}
	varTmp := true
	for _, v := range tmpfs {
		m, err := config.ParseTmpfs(v)
		if err != nil {
			return err
		}
		if err := t.ensure(m.Destination, true); err != nil {
			if errors.Is(err, errMissing) {
				return &config.UsageError{Err: fmt.Errorf("--tmpfs %s: %s does not exist in the rootfs, and mrtd does not create mount points in a --rootfs directory, which it uses as it is: create it there, or pick a directory that exists, such as /mnt or /srv", v, m.Destination)}
			}
			return &config.UsageError{Err: fmt.Errorf("--tmpfs %s: %w", v, err)}
		}
		if m.Destination == "/var/tmp" {
			varTmp = false
		}
		dsts[m.Destination] = "--tmpfs " + v
		o.Tmpfs = append(o.Tmpfs, container.Tmpfs{Destination: m.Destination, Options: m.Options})
	}
	if varTmp {
		// /var/tmp is a tmpfs by default, as /tmp and /run (Podman's
		// read-only mode does the same). A tree mrtd extracted gets the
		// mount point when it lacks it; a user's own --rootfs DIR without
		// /var/tmp simply goes without it: what is not in the rootfs is
		// no writable place its programs expect, and mrtd never changes
		// such a directory.
		switch err := t.ensure("/var/tmp", true); {
		case err == nil:
			o.Tmpfs = append(o.Tmpfs, container.Tmpfs{Destination: "/var/tmp"})
		case errors.Is(err, errMissing):
		default:
			return err
		}
	}
	for _, v := range mounts {
		if config.IsTemplate(v) {
			m, err := config.ParseMountTemplate("--mount", v)
			if err != nil {
				return err
			}
			if prev, ok := dsts[m.Destination]; ok {
				return &config.UsageError{Err: fmt.Errorf("--mount %s: %s is the destination of %s too: give each mount its own", v, m.Destination, prev)}
			}
			dsts[m.Destination] = "--mount " + v
			o.Binds = append(o.Binds, container.Bind{Source: m.SourceText, Destination: m.Destination, ReadOnly: m.ReadOnly})
			continue
		}
		m, err := config.ParseMount(v)
		if err != nil {
			return err
		}
		if prev, ok := dsts[m.Destination]; ok {
			return &config.UsageError{Err: fmt.Errorf("--mount %s: %s is the destination of %s too: give each mount its own", v, m.Destination, prev)}
		}
		dsts[m.Destination] = "--mount " + v
		if err := checkMount(t, v, m, o.UID, o.GID, p); err != nil {
			return err
		}
		o.Binds = append(o.Binds, container.Bind{Source: m.Source, Destination: m.Destination, ReadOnly: m.ReadOnly})
	}
	return nil
}

// checkRoot checks, before any container is created, what runc would
// otherwise fail on at every start or do in the shared tree: the working
// directory must exist in the rootfs (runc would create it there), and the
// command with its interpreter must be found. A missing command is a
// *container.CommandError.
func checkRoot(o container.Options) error {
	root, err := container.OpenRoot(o.Rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	if o.Cwd != "" {
		fi, err := root.Stat(o.Cwd)
		if err != nil || !fi.IsDir() {
			return &config.UsageError{Err: fmt.Errorf("--workdir %s is not a directory in the rootfs: the rootfs is shared and read-only, so mrtd does not create it; pick one that exists, such as /tmp or /srv", o.Cwd)}
		}
	}
	return root.LookCommand(o.Args[0], o.Env, o.Cwd)
}

// protected are the paths a worker must not be able to change through a
// read-write mount, because every worker executes them, and the one it must
// not reach at all.
type protected struct {
	// exec are the rootfs, runc and the cache dir.
	exec []string
	// runtimeDir holds the control socket (connecting to a socket needs no
	// write access to its mount) and runc's state.
	runtimeDir string
}

// checkMount checks a --mount against the rootfs and the host: its
// destination must exist in the rootfs with the source's type (runc would
// create it in the shared tree, or fail) or be created there (only in a
// tree mrtd extracted, once the other checks pass), the container's root
// must be able to read the source, and the source must not expose mrtd's
// own files.
func checkMount(t tree, flag string, m config.Mount, uid, gid uint32, p protected) error {
	usage := func(format string, args ...any) error {
		return &config.UsageError{Err: fmt.Errorf("--mount %s: "+format, append([]any{flag}, args...)...)}
	}
	src, err := os.Stat(m.Source)
	if err != nil {
		return usage("source %s: %v", m.Source, errors.Unwrap(err))
	}
	switch dstDir, err := t.stat(m.Destination); {
	case errors.Is(err, unix.ENOENT) && !t.create:
		return usage("%s does not exist in the rootfs, and mrtd does not create mount points in a --rootfs directory, which it uses as it is (and shares, read-only): create it there, or pick a destination that exists, such as /mnt, /srv or /var/archivematica/sharedDirectory", m.Destination)
	case errors.Is(err, unix.ENOENT):
		// Created below, once the other checks pass.
	case err != nil:
		return usage("%s in the rootfs: %v", m.Destination, err)
	case src.IsDir() != dstDir:
		return usage("source %s is %s but %s is %s in the rootfs: mount a directory on a directory and a file on a file", m.Source, kindName(src.IsDir()), m.Destination, kindName(dstDir))
	}
	_, _, inside := userns.Inside()
	switch {
	case privileged():
		if err := container.CheckReadable(m.Source, uid, gid); err != nil {
			return usage("the containers' root (host uid %d) cannot read the source: %v; make it readable by that uid, or pick another --host-uid", uid, err)
		}
	case inside:
		// uid 0 here is the user who started mrtd, which --user is on
		// the host; as root of this namespace, access(2) would pass.
		if err := container.CheckReadable(m.Source, 0, 0); err != nil {
			return usage("you cannot read the source (%v), so neither can the containers: mount something you can read", err)
		}
	default:
		mode := uint32(unix.R_OK)
		if src.IsDir() {
			mode |= unix.X_OK
		}
		if err := unix.Access(m.Source, mode); err != nil {
			return usage("you cannot read %s (%v), so neither can the containers: mount something you can read", m.Source, err)
		}
	}
	real, err := filepath.EvalSymlinks(m.Source)
	if err != nil {
		return usage("%v", err)
	}
	if overlaps(real, p.runtimeDir) {
		return usage("the source and mrtd's runtime dir %s overlap: a worker could use mrtd's control socket and runc's state; pass a --runtime-dir outside the mount, or mount something else", p.runtimeDir)
	}
	if !m.ReadOnly {
		for _, q := range p.exec {
			if overlaps(real, q) {
				return usage("the source holds %s, which every worker executes: a worker could change it for all; add :ro, or keep the cache dir, rootfs and runc outside the mount", q)
			}
		}
	}
	if err := t.ensure(m.Destination, src.IsDir()); err != nil {
		return usage("%v", err)
	}
	return nil
}

// stopSignal is the signal that asks a worker to stop: the pool's when
// set (--stop-signal, MRTD_STOP_SIGNAL or the config file), else the
// image's StopSignal, else the pool's default (TERM). An image's signal
// mrtd cannot parse is logged and left out.
func stopSignal(st Settings, img *image.ImageConfig, log logr.Logger) syscall.Signal {
	sig, _ := config.ParseSignal(st.Pool.StopSignal)
	if st.StopSignalSet || img == nil || img.StopSignal == "" {
		return sig
	}
	isig, err := config.ParseSignal(img.StopSignal)
	if err != nil {
		warn(log, "the image's StopSignal is not a signal; using the default stop signal", "image", img.Ref, "imageStopSignal", img.StopSignal, "stopSignal", st.Pool.StopSignal)
		return sig
	}
	return isig
}

// imageLabels are the Labels of img, which mrtd status --json shows; nil
// without an image or labels.
func imageLabels(img *image.ImageConfig) map[string]string {
	if img == nil || len(img.Labels) == 0 {
		return nil
	}
	return maps.Clone(img.Labels)
}

// overlaps reports whether the paths a and b (symlinks resolved where they
// exist) are the same or one contains the other.
func overlaps(a, b string) bool {
	if b == "" {
		return false
	}
	if r, err := filepath.EvalSymlinks(b); err == nil {
		b = r
	}
	a, b = filepath.Clean(a), filepath.Clean(b)
	within := func(x, y string) bool { return x == y || y == "/" || strings.HasPrefix(x, y+"/") }
	return within(a, b) || within(b, a)
}
