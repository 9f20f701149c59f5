package container

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	p := filepath.Clean(dir)
	for {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return err
		}
		var ok bool
		switch {
		case st.Uid == uid:
			ok = st.Mode&0o100 != 0
		case st.Gid == gid:
			ok = st.Mode&0o010 != 0
		default:
			ok = st.Mode&0o001 != 0
		}
		if !ok {
			return fmt.Errorf("%s is not reachable by uid %d, the containers' root, because %s is mode %04o: use a --cache-dir or --rootfs outside it (for example under /var/cache)", dir, uid, p, st.Mode&0o7777)
		}
		if p == "/" {
			return nil
		}
		p = filepath.Dir(p)
	}
}
