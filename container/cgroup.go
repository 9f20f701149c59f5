package container

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Cgroup limits of rootless containers (memory, CPU, pids) need a cgroup
// v2 subtree delegated to the user who runs runc: a directory of the
// unified hierarchy that the user may write, with the controllers in its
// cgroup.controllers. systemd makes one for a unit with Delegate=yes. In
// it, as Podman and runc do, mrtd moves itself into a leaf cgroup
// (LeafCgroup), enables the controllers in the subtree's
// cgroup.subtree_control (cgroup v2 hands controllers only from a cgroup
// without processes of its own), and gives each container a cgroup beside
// that leaf, which runc creates and removes.
//
//	/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/mrtd.service/
//	    cgroup.subtree_control   +cpu +memory +pids
//	    mrtd/                    mrtd itself (and runc while it starts a container)
//	    mrtd-0/                  worker 0: memory.max, cpu.max, pids.max
//	    mrtd-1/                  ...

// LeafCgroup is the cgroup, below the delegated one, that mrtd moves
// itself into.
const LeafCgroup = "mrtd"

// CgroupHost is where a process's cgroups are read: the cgroup v2 mount and
// its /proc/self/cgroup. Tests point it at fake trees.
type CgroupHost struct {
	// Mount is where the cgroup file system is: /sys/fs/cgroup.
	Mount string
	// Self is the process's cgroup file: /proc/self/cgroup.
	Self string
	// Writable reports whether the process may write the file or
	// directory p: access(2) when nil.
	Writable func(p string) bool
}

// HostCgroups are this process's cgroups.
var HostCgroups = CgroupHost{Mount: "/sys/fs/cgroup", Self: "/proc/self/cgroup"}

// CgroupError says, in one line, why cgroup limits cannot be applied:
// what is missing and how to get it.
type CgroupError struct {
	Reason string
}

func (e *CgroupError) Error() string { return e.Reason }

func cgroupErrorf(format string, args ...any) error {
	return &CgroupError{Reason: fmt.Sprintf(format, args...)}
}

// Delegation is a cgroup v2 subtree delegated to this process's user.
type Delegation struct {
	host CgroupHost
	// Path is the delegated cgroup, below the mount: /user.slice/....
	Path string
	// entered is true when this process sits in the subtree's leaf
	// already.
	entered bool
}

// Dir is the delegated cgroup's directory.
func (d *Delegation) Dir() string { return filepath.Join(d.host.Mount, d.Path) }

func (h CgroupHost) writable(p string) bool {
	if h.Writable != nil {
		return h.Writable(p)
	}
	return unix.Access(p, unix.W_OK) == nil
}

// selfCgroups reads the cgroup file: the cgroup v2 path (the 0:: line; ""
// when none) and, by controller, the cgroup v1 hierarchies.
func (h CgroupHost) selfCgroups() (v2 string, v1 map[string]string, err error) {
	c, err := readCgroups(h.Self)
	if err != nil {
		return "", nil, cgroupErrorf("cannot read this process's cgroups: %v", err)
	}
	return c.v2, c.v1, nil
}

// unified reports whether Mount is a cgroup v2 mount (its root has
// cgroup.controllers).
func (h CgroupHost) unified() bool {
	_, err := os.Stat(filepath.Join(h.Mount, "cgroup.controllers"))
	return err == nil
}

// readControllers reads a cgroup.controllers or cgroup.subtree_control
// file.
func readControllers(p string) ([]string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// Delegated finds the cgroup v2 subtree this process may give containers
// cgroups in, with the controllers it needs. Without one it returns a
// *CgroupError naming what is missing: cgroup v1 here, a cgroup not
// delegated to the user, or a controller not enabled for it.
func (h CgroupHost) Delegated(controllers []string) (*Delegation, error) {
	v2, v1, err := h.selfCgroups()
	if err != nil {
		return nil, err
	}
	for _, c := range controllers {
		if _, ok := v1[c]; ok {
			return nil, cgroupErrorf("cgroup v1 here: the %s controller is on a cgroup v1 hierarchy, and rootless containers get cgroup limits only from cgroup v2 (boot with systemd.unified_cgroup_hierarchy=1, the default since systemd 247)", c)
		}
	}
	if v2 == "" || !h.unified() {
		return nil, cgroupErrorf("cgroup v1 here: %s is not a cgroup v2 mount, and rootless containers get cgroup limits only from cgroup v2 (boot with systemd.unified_cgroup_hierarchy=1)", h.Mount)
	}
	d := &Delegation{host: h, Path: path.Clean(v2)}
	if path.Base(d.Path) == LeafCgroup && d.Path != "/"+LeafCgroup {
		// This process entered the subtree already (a second call, or
		// an mrtd started from inside it): its parent is the subtree.
		parent := &Delegation{host: h, Path: path.Dir(d.Path), entered: true}
		if h.writable(parent.Dir()) && h.writable(filepath.Join(parent.Dir(), "cgroup.subtree_control")) {
			d = parent
		}
	}
	if d.Path == "/" {
		return nil, cgroupErrorf("not delegated: mrtd runs in the root cgroup; run mrtd as a systemd user service with Delegate=yes")
	}
	dir := d.Dir()
	for _, p := range []string{dir, filepath.Join(dir, "cgroup.procs"), filepath.Join(dir, "cgroup.subtree_control")} {
		if !h.writable(p) {
			return nil, cgroupErrorf("not delegated: you cannot write %s; run mrtd as a systemd user service with Delegate=yes (deploy/systemd/mrtd.service)", p)
		}
	}
	have, err := readControllers(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, cgroupErrorf("cannot read the controllers of %s: %v", dir, err)
	}
	for _, c := range controllers {
		if !slices.Contains(have, c) {
			return nil, cgroupErrorf("controller %s not enabled in %s: the cgroup above mrtd's does not delegate it (for a systemd user service: systemctl edit user@.service, [Service] Delegate=cpu memory pids, as root)",
				c, filepath.Join(filepath.Dir(dir), "cgroup.subtree_control"))
		}
	}
	return d, nil
}

// Enter moves every process of the delegated cgroup (mrtd, and a shim of
// it) into its leaf, LeafCgroup, and enables controllers in the delegated
// cgroup's cgroup.subtree_control, so that containers can have cgroups
// with those controllers beside the leaf. A cgroup with processes cannot
// enable controllers for its children, and no process can enter a cgroup
// that has: the processes go first. Entering again is harmless.
func (d *Delegation) Enter(controllers []string) error {
	dir := d.Dir()
	leaf := filepath.Join(dir, LeafCgroup)
	if !d.entered {
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return cgroupErrorf("creating the cgroup %s: %v", leaf, err)
		}
	}
	enable := "+" + strings.Join(controllers, " +")
	var err error
	for range 10 {
		if !d.entered {
			if err := moveProcs(filepath.Join(dir, "cgroup.procs"), filepath.Join(leaf, "cgroup.procs")); err != nil {
				return err
			}
		}
		// EBUSY: a process forked into the cgroup since it was read.
		if err = writeCgroupFile(filepath.Join(dir, "cgroup.subtree_control"), enable); !errors.Is(err, unix.EBUSY) {
			break
		}
	}
	if err != nil {
		return cgroupErrorf("enabling %s in %s: %v", strings.Join(controllers, ", "), filepath.Join(dir, "cgroup.subtree_control"), err)
	}
	d.entered = true
	return nil
}

// moveProcs writes each pid of the cgroup.procs file from to the
// cgroup.procs file to; a process that exited meanwhile is skipped.
func moveProcs(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return cgroupErrorf("reading %s: %v", from, err)
	}
	for _, f := range strings.Fields(string(b)) {
		if _, err := strconv.Atoi(f); err != nil {
			continue
		}
		if err := writeCgroupFile(to, f); err != nil && !errors.Is(err, unix.ESRCH) {
			return cgroupErrorf("moving process %s into %s: %v", f, filepath.Dir(to), err)
		}
	}
	return nil
}

// writeCgroupFile writes data to the existing cgroup file p, in one
// write.
func writeCgroupFile(p, data string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// CheckRootCgroups checks, for runc run by root, that the host has the
// controllers: on a cgroup v2 host in the root's cgroup.controllers, on a
// cgroup v1 (or hybrid) host as v1 hierarchies, where runc as root uses
// them; and that the cgroup file system is writable.
func (h CgroupHost) CheckRootCgroups(controllers []string) error {
	_, v1, err := h.selfCgroups()
	if err != nil {
		return err
	}
	if h.unified() {
		have, err := readControllers(filepath.Join(h.Mount, "cgroup.controllers"))
		if err != nil {
			return cgroupErrorf("cannot read the controllers of %s: %v", h.Mount, err)
		}
		for _, c := range controllers {
			if !slices.Contains(have, c) {
				return cgroupErrorf("controller %s not available in %s", c, filepath.Join(h.Mount, "cgroup.controllers"))
			}
		}
		if !h.writable(h.Mount) {
			return cgroupErrorf("%s is not writable (read-only in a container?)", h.Mount)
		}
		return nil
	}
	for _, c := range controllers {
		if _, ok := v1[c]; !ok {
			return cgroupErrorf("controller %s not mounted: no cgroup v1 hierarchy has it (see /proc/self/cgroup)", c)
		}
		dir := filepath.Join(h.Mount, c)
		if !h.writable(dir) {
			return cgroupErrorf("%s is not writable (read-only in a container?)", dir)
		}
	}
	return nil
}
