package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// UserNamespaceError says why user namespaces cannot be created and how to
// allow them.
type UserNamespaceError struct {
	Reason string
	Fix    string
}

func (e *UserNamespaceError) Error() string {
	return fmt.Sprintf("user namespaces are disabled on this host (%s): %s", e.Reason, e.Fix)
}

// CheckUserNamespaces reads the kernel settings that stop an unprivileged
// process (rootless is true) or root from creating a user namespace. procSys
// is normally "/proc/sys".
func CheckUserNamespaces(procSys string, rootless bool) error {
	read := func(name string) (int, bool) {
		b, err := os.ReadFile(filepath.Join(procSys, name))
		if err != nil {
			return 0, false
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return n, err == nil
	}
	if n, ok := read("user/max_user_namespaces"); ok && n == 0 {
		return &UserNamespaceError{
			Reason: "user.max_user_namespaces is 0",
			Fix:    "run `sysctl -w user.max_user_namespaces=15000` as root, and set it in /etc/sysctl.d/ to keep it",
		}
	}
	if !rootless {
		return nil
	}
	if n, ok := read("kernel/unprivileged_userns_clone"); ok && n == 0 {
		return &UserNamespaceError{
			Reason: "kernel.unprivileged_userns_clone is 0",
			Fix:    "run `sysctl -w kernel.unprivileged_userns_clone=1` as root, and set it in /etc/sysctl.d/ to keep it",
		}
	}
	if n, ok := read("kernel/apparmor_restrict_unprivileged_userns"); ok && n == 1 {
		return &UserNamespaceError{
			Reason: "AppArmor restricts unprivileged user namespaces, as on Ubuntu 24.04",
			Fix: "allow them for mrtd with an AppArmor profile granting `userns,` to its path (see README), " +
				"or run `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` as root",
		}
	}
	return nil
}

// CheckReachable reports an error when a process with the given uid and gid
// (and no capabilities over the path) cannot reach dir: runc, started as
// root, mounts the rootfs from inside the user namespace, as that uid.
func CheckReachable(dir string, uid, gid uint32) error {
	// Absolute: the walk up ends at "/".
	p, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return err
		}
		ok := permits(&st, uid, gid, 0o1)
		if !ok {
			return fmt.Errorf("%s is not reachable by uid %d, the containers' root, because %s is mode %04o: use a --cache-dir or --rootfs outside it (for example under /var/cache)", dir, uid, p, st.Mode&0o7777)
		}
		if p == "/" {
			return nil
		}
		p = filepath.Dir(p)
	}
}

// CheckRecursiveReadOnly reports an error when the kernel lacks
// mount_setattr(2) (Linux 5.12): read-only mounts are made read-only all the
// way down with it (runc's rro), and without it every mount under a
// read-only bind would stay writable.
func CheckRecursiveReadOnly() error {
	err := unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH, &unix.MountAttr{})
	if errors.Is(err, unix.ENOSYS) {
		var u unix.Utsname
		unix.Uname(&u)
		return fmt.Errorf("this kernel (%s) lacks mount_setattr, which mrtd needs to make read-only mounts read-only recursively: use Linux 5.12 or later", unix.ByteSliceToString(u.Release[:]))
	}
	return nil
}

// CheckReadable reports an error when a process with uid and gid (no
// capabilities, no supplementary groups) cannot read p: search permission on
// every parent directory, read (and search, for a directory) on p itself.
// mrtd run by root uses it for the unprivileged uid container root maps to.
// ACLs are not consulted.
func CheckReadable(p string, uid, gid uint32) error {
	// Absolute: the walk up below ends at "/" (filepath.Dir of a relative
	// path ends at ".", for ever).
	p, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return err
	}
	need := uint32(0o4)
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		need |= 0o1
	}
	if !permits(&st, uid, gid, need) {
		return fmt.Errorf("uid %d cannot read %s (mode %04o, owner %d:%d)", uid, p, st.Mode&0o7777, st.Uid, st.Gid)
	}
	for d := filepath.Dir(p); ; d = filepath.Dir(d) {
		if err := syscall.Stat(d, &st); err != nil {
			return err
		}
		if !permits(&st, uid, gid, 0o1) {
			return fmt.Errorf("uid %d cannot reach %s: %s is mode %04o, owner %d:%d", uid, p, d, st.Mode&0o7777, st.Uid, st.Gid)
		}
		if d == "/" {
			return nil
		}
	}
}

// permits applies the owner, group or other bits of st (need is an rwx
// triple, 0o4 for read) as the kernel does for a process without
// capabilities.
func permits(st *syscall.Stat_t, uid, gid, need uint32) bool {
	switch {
	case st.Uid == uid:
		return (st.Mode>>6)&need == need
	case st.Gid == gid:
		return (st.Mode>>3)&need == need
	default:
		return st.Mode&need == need
	}
}
