// Package userns runs a command as a container uid other than root, with
// subordinate ids, as Podman's keep-id does. An unprivileged runc can only
// map container root to the user who runs it, so mrtd re-executes itself
// into an outer user namespace whose maps newuidmap and newgidmap write:
// outer 0 is the host user H and outer 1..N the user's subordinate range
// S..S+N-1 from /etc/subuid and /etc/subgid (Outer). runc runs as root
// inside it and maps the container into the outer namespace so that
// container uid U is outer 0 (the host user) and the other container ids
// 0..N lie on the range (KeepID); every inner line falls inside one outer
// line, and a uid above N is refused. Inside the namespace os.Geteuid() is
// 0, so the host id comes from /proc/self/uid_map (HostID). Compose,
// ComposeMap and Key follow a container id, or a whole map, to the host,
// for checks and for the rootfs cache key.
//
// Enter is the re-execution: the mrtd that needs the namespace stays as a
// shim around the one in it, passing signals and systemd notifications on
// and exiting with its status. main calls Init first, which in that child
// waits for the maps; Inside tells a process in the namespace and who the
// host user is.
//
// It imports no mrtd package (deps_test.go says who may import it).
package userns
