package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/image"
)

// containerOptions is the container cfg describes on rootfs: the one of
// mrtd run, and the template of every worker. With an image's config img,
// the image's Env comes before cfg's, its WorkingDir applies unless
// --workdir is given, and the command is its Entrypoint followed by cfg's
// command, or by its Cmd when cfg gives none (as docker run does).
func containerOptions(cfg config.Config, rootfs string, img *image.ImageConfig, log logr.Logger) (container.Options, error) {
	uid, gid := hostIDs(cfg)
	o := container.Options{
		Rootfs:            rootfs,
		Args:              cfg.Args,
		Env:               cfg.Env,
		Cwd:               cfg.Workdir,
		UID:               uid,
		GID:               gid,
		Network:           cfg.Network,
		SeccompUnconfined: cfg.Seccomp == config.SeccompUnconfined,
		NoFile:            noFileLimit(),
	}
	if img == nil {
		return o, nil
	}
	o.Env = append(slices.Clone(img.Env), cfg.Env...)
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
	if u := img.User; u != "" && u != "0" && u != "root" && !strings.HasPrefix(u, "0:") && !strings.HasPrefix(u, "root:") {
		// runc started by an unprivileged user needs container root
		// mapped to that user, and no other uid is mapped.
		log.Info("the image's USER runs as container root, which is the host user mrtd maps it to", "image", img.Ref, "imageUser", u)
	}
	return o, nil
}

// workerTemplate is every worker's container, from the settings. It checks
// the command, the working directory and the mounts against the rootfs and
// the host: what would make every start fail is a usage error before any
// worker starts.
func workerTemplate(st Settings, rootfs string, img *image.ImageConfig, log logr.Logger) (container.Options, error) {
	o, err := containerOptions(st.Container, rootfs, img, log)
	if err != nil {
		return container.Options{}, err
	}
	root, err := container.OpenRoot(rootfs)
	if err != nil {
		return container.Options{}, err
	}
	defer root.Close()
	prot := protected{exec: []string{st.Container.CacheDir, rootfs}, runtimeDir: st.Container.RuntimeDir}
	if st.Container.Runc != "" {
		prot.exec = append(prot.exec, st.Container.Runc)
	}
	for _, m := range st.Pool.Mounts {
		mnt, err := config.ParseMount(m)
		if err != nil {
			return container.Options{}, err
		}
		if err := checkMount(root, m, mnt, o.UID, o.GID, prot); err != nil {
			return container.Options{}, err
		}
		o.Binds = append(o.Binds, container.Bind{Source: mnt.Source, Destination: mnt.Destination, ReadOnly: mnt.ReadOnly})
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
// create it in the shared tree, or fail), the container's root must be able
// to read the source, and the source must not expose mrtd's own files.
func checkMount(root *container.Root, flag string, m config.Mount, uid, gid uint32, p protected) error {
	usage := func(format string, args ...any) error {
		return &config.UsageError{Err: fmt.Errorf("--mount %s: "+format, append([]any{flag}, args...)...)}
	}
	src, err := os.Stat(m.Source)
	if err != nil {
		return usage("source %s: %v", m.Source, errors.Unwrap(err))
	}
	dst, err := root.Stat(m.Destination)
	if err != nil {
		return usage("%s does not exist in the rootfs; mount points must exist there (the rootfs is shared and read-only): pick a destination that exists, such as /mnt, /srv or /var/archivematica/sharedDirectory", m.Destination)
	}
	if src.IsDir() != dst.IsDir() {
		kind := func(fi os.FileInfo) string {
			if fi.IsDir() {
				return "a directory"
			}
			return "a file"
		}
		return usage("source %s is %s but %s is %s in the rootfs: mount a directory on a directory and a file on a file", m.Source, kind(src), m.Destination, kind(dst))
	}
	if os.Geteuid() == 0 {
		if err := container.CheckReadable(m.Source, uid, gid); err != nil {
			return usage("the containers' root (host uid %d) cannot read the source: %v; make it readable by that uid, or pick another --host-uid", uid, err)
		}
	} else {
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
	return nil
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
