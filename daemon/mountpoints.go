package daemon

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// tree is a rootfs directory as the mounts see it: where their mount
// points must be, and whether mrtd may create the missing ones.
//
// runc creates a missing mount point itself, inside the rootfs, which is
// shared by every worker and read-only to them (decision 6). mrtd creates
// it instead, and only in a tree it extracted itself (the embedded rootfs,
// an archive, an image): a user's own --rootfs DIR is never modified.
// Creating in a tree that running workers use is safe for what is created
// here alone: an empty directory, or an empty file for a file bind, that
// no entry of the tree held, owned like the rest of the tree (root's trees
// stay 0:0 with no group or other write bit; a user's are the user's),
// which the workers see through their read-only bind of the tree. It adds
// nothing a worker could read, write or execute, and changes no file one
// uses. Every path is resolved inside the tree (openat2 RESOLVE_IN_ROOT,
// as container.Root and runc do), so a symlink in the tree never leads a
// creation out of it.
type tree struct {
	dir string
	// create is set for a tree mrtd extracted itself.
	create bool
	// rootOwned is set when mrtd runs as root: its trees are owned by 0:0
	// (rootfs.Cache.RootOwned), and so is what is created in them.
	rootOwned bool
}

// errMissing is a mount point missing from a tree mrtd may not change.
var errMissing = errors.New("missing")

// ensure makes sure the mount point p (absolute inside the tree) exists:
// a directory when dir is set, else a file. A missing one is created, with
// its missing parents as directories, when t.create; otherwise ensure
// returns errMissing. An entry of the other type is an error.
func (t tree) ensure(p string, dir bool) error {
	rootFd, err := unix.Open(t.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootFd)
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return nil // the root itself
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		last := i == len(parts)-1
		sub := strings.Join(parts[:i+1], "/")
		wantDir := dir || !last
		isDir, err := statIn(rootFd, sub)
		if err == nil {
			if isDir != wantDir {
				return fmt.Errorf("/%s is %s in the rootfs, not %s", sub, kindName(isDir), kindName(wantDir))
			}
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("/%s: %w", sub, err)
		}
		if !t.create {
			return errMissing
		}
		if err := t.create1(rootFd, strings.Join(parts[:i], "/"), parts[i], wantDir); err != nil {
			return fmt.Errorf("creating the mount point /%s in the rootfs %s: %w", sub, t.dir, err)
		}
		// Look again: another mrtd may have created it meanwhile, or it
		// is a symlink to nothing.
		isDir, err = statIn(rootFd, sub)
		switch {
		case err != nil:
			return fmt.Errorf("/%s in the rootfs is a symlink to nothing: mrtd does not create its target", sub)
		case isDir != wantDir:
			return fmt.Errorf("/%s is %s in the rootfs, not %s", sub, kindName(isDir), kindName(wantDir))
		}
	}
	return nil
}

// create1 creates the empty directory or file name in the directory
// parent (relative to the tree at rootFd, resolved inside it).
func (t tree) create1(rootFd int, parent, name string, dir bool) error {
	if parent == "" {
		parent = "."
	}
	pfd, err := openIn(rootFd, parent, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	mk := func() error {
		if dir {
			return unix.Mkdirat(pfd, name, 0o755)
		}
		fd, err := unix.Openat(pfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	err = mk()
	if errors.Is(err, unix.EACCES) && !t.rootOwned {
		// The user's own tree, with a directory the image made read-only
		// (0555): allow the user to write it for this one entry.
		var st unix.Stat_t
		if unix.Fstat(pfd, &st) == nil && int(st.Uid) == os.Geteuid() && st.Mode&0o200 == 0 {
			if unix.Fchmod(pfd, st.Mode&0o7777|0o200) == nil {
				err = mk()
				unix.Fchmod(pfd, st.Mode&0o7777)
			}
		}
	}
	if errors.Is(err, unix.EEXIST) {
		// Another mrtd created it meanwhile, or it is a symlink: the
		// caller looks again.
		return nil
	}
	if err != nil {
		return err
	}
	// Give it its mode whatever the umask, and root's trees their owner.
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	mode := uint32(0o644)
	if dir {
		flags |= unix.O_DIRECTORY
		mode = 0o755
	}
	fd, err := unix.Openat(pfd, name, flags, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if t.rootOwned {
		if err := unix.Fchown(fd, 0, 0); err != nil {
			return err
		}
	}
	return unix.Fchmod(fd, mode)
}

// stat reports whether p (absolute inside the tree) is a directory; a
// missing p is ENOENT.
func (t tree) stat(p string) (bool, error) {
	rootFd, err := unix.Open(t.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(rootFd)
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	return statIn(rootFd, rel)
}

// openIn opens rel, resolved inside the tree at rootFd.
func openIn(rootFd int, rel string, flags int) (int, error) {
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(rootFd, rel, how)
	if errors.Is(err, unix.EAGAIN) {
		// A rename elsewhere in the tree raced the lookup: once more.
		fd, err = unix.Openat2(rootFd, rel, how)
	}
	return fd, err
}

// statIn reports whether rel, resolved inside the tree at rootFd, is a
// directory. A missing entry (or parent) is ENOENT.
func statIn(rootFd int, rel string) (bool, error) {
	fd, err := openIn(rootFd, rel, unix.O_PATH)
	if errors.Is(err, unix.ENOTDIR) {
		err = unix.ENOENT
	}
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

func kindName(dir bool) string {
	if dir {
		return "a directory"
	}
	return "a file"
}
