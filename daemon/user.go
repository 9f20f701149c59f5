package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	muser "github.com/moby/sys/user"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/internal/userns"
	"github.com/mrt-project/mrt/rootfs"
)

// isRootUser reports whether a --user or an image's USER names container
// root: "", 0, root, 0:0, root:root and the like.
func isRootUser(u string) bool {
	name, group, _ := strings.Cut(u, ":")
	rootish := func(s string) bool { return s == "" || s == "0" || s == "root" }
	return rootish(name) && rootish(group)
}

// privileged reports whether mrtd runs as the host's root: euid 0 outside
// the user namespace mrtd makes for --user (inside it, euid is 0 too, but
// it is the user who started mrtd).
func privileged() bool {
	_, _, inside := userns.Inside()
	return os.Geteuid() == 0 && !inside
}

// idHost says what the host offers for running a command as a non-root
// container uid: the tools and files to look at, replaced in tests.
type idHost struct {
	lookPath       func(string) (string, error)
	subuid, subgid string
	uid, gid       int
	name           string
	root           bool
}

func thisHost() idHost {
	h := idHost{lookPath: exec.LookPath, subuid: "/etc/subuid", subgid: "/etc/subgid", uid: os.Geteuid(), gid: os.Getegid(), root: privileged()}
	if u, err := user.LookupId(strconv.Itoa(h.uid)); err == nil {
		h.name = u.Username
	}
	return h
}

// who names the host user in messages and subordinate id files.
func (h idHost) who() string {
	if h.name != "" {
		return h.name
	}
	return strconv.Itoa(h.uid)
}

// checkUser says whether the host lets a command run as --user u: always
// as container root; as another user only with newuidmap, newgidmap and a
// subordinate id range for the user who runs mrtd (Podman's keep-id), and
// not for root's mrtd. A refusal names what to install or add.
func checkUser(u string, h idHost) error {
	if isRootUser(u) {
		return nil
	}
	if h.root {
		return &config.UsageError{Err: fmt.Errorf("--user %s: mrtd run by root runs the command as container root (host uid --host-uid); other users are not supported for root: run mrtd as a normal user with a subordinate id range, or without --user", u)}
	}
	var missing []string
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if _, err := h.lookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	for _, f := range []string{h.subuid, h.subgid} {
		if !hasRange(f, h.name, h.uid) {
			missing = append(missing, fmt.Sprintf("a line %s:100000:65536 in %s", h.who(), f))
		}
	}
	if len(missing) > 0 {
		return &config.UsageError{Err: fmt.Errorf("--user %s needs subordinate ids, and this host lacks %s: install Debian's uidmap package (apt-get install uidmap) and give %s a range in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s), or run without --user (as container root, which is you)", u, strings.Join(missing, ", "), h.who(), h.who())}
	}
	return nil
}

// hasRange reports whether the subordinate id file grants name (or uid) a
// range.
func hasRange(path, name string, uid int) bool {
	_, ok, err := userns.SubIDs(path, name, uint32(uid))
	return ok && err == nil
}

// EnterUserNamespace runs this mrtd again inside its own user namespace
// when cfg runs the command as a non-root --user, and this process is not
// in it yet: it returns the status to exit with once that mrtd has exited,
// and entered true. There mrtd is root over the user's own uid and the
// subordinate ids, so that runc can map the --user to the user who runs
// mrtd and container root to a subordinate uid (Podman's keep-id). This
// process stays as a shim that forwards signals. Before it enters, it
// kills the containers a previous mrtd of this runtime dir left running:
// they live in that mrtd's namespace, which the new one cannot signal.
func EnterUserNamespace(cfg config.Config, log logr.Logger) (status int, entered bool, err error) {
	if _, _, inside := userns.Inside(); inside || isRootUser(cfg.User) {
		return 0, false, nil
	}
	h := thisHost()
	if err := checkUser(cfg.User, h); err != nil {
		return 0, false, err
	}
	if _, err := os.Stat(cfg.RuntimeDir); err == nil {
		rt := &container.Runtime{Dir: cfg.RuntimeDir, Log: log.WithName("container")}
		if n, err := rt.KillStale(); err != nil {
			log.Error(err, "killing containers a previous mrtd left")
		} else if n > 0 {
			log.Info("killed containers a previous mrtd left running", "containers", n)
		}
	}
	status, err = enter(h)
	return status, true, err
}

// EnterUserNamespaceToPrune runs this mrtd again inside its own user
// namespace, as EnterUserNamespace does, for mrtd prune: only there can it
// remove the trees made for --user, whose files belong to subordinate ids.
// It does nothing (entered false) inside the namespace already, when the
// cache holds no such tree, or when the host cannot make the namespace
// (then mrtd prune leaves those trees and says so).
func EnterUserNamespaceToPrune(cacheDir string) (status int, entered bool, err error) {
	if _, _, inside := userns.Inside(); inside || privileged() {
		return 0, false, nil
	}
	c := &rootfs.Cache{Dir: cacheDir}
	mapped := false
	for _, p := range c.Entries() {
		mapped = mapped || c.MappedKey(p) != ""
	}
	h := thisHost()
	if !mapped || checkUser("1", h) != nil {
		return 0, false, nil
	}
	status, err = enter(h)
	return status, true, err
}

// enter runs this mrtd again in a new user namespace with the host user's
// subordinate ranges, and returns the status it exited with.
func enter(h idHost) (int, error) {
	subUID, _, err := userns.SubIDs(h.subuid, h.name, uint32(h.uid))
	if err != nil {
		return 0, err
	}
	subGID, _, err := userns.SubIDs(h.subgid, h.name, uint32(h.uid))
	if err != nil {
		return 0, err
	}
	newuidmap, _ := h.lookPath("newuidmap")
	newgidmap, _ := h.lookPath("newgidmap")
	return userns.Enter(userns.EnterOptions{
		UID: uint32(h.uid), GID: uint32(h.gid),
		SubUID: subUID, SubGID: subGID,
		NewUIDMap: newuidmap, NewGIDMap: newgidmap,
		Args: os.Args, Env: os.Environ(),
	})
}

// keepID is how containers run as --user inside mrtd's user namespace: the
// user, found in the rootfs's /etc/passwd and /etc/group, and the maps
// that make it the host user and put container root and every other id on
// the subordinate ranges.
type keepID struct {
	spec string // --user as given
	user container.User
	home string
	maps container.IDMaps // container id -> id of mrtd's namespace
	// key names the trees extracted through maps: a hash of the
	// container -> host maps, which the subordinate ranges change too.
	key string
}

// planKeepID resolves spec in the rootfs tree and returns the maps for
// it. It is only for a process inside mrtd's user namespace.
func planKeepID(spec, tree string) (*keepID, error) {
	u, err := lookupUser(spec, tree)
	if err != nil {
		return nil, err
	}
	outerU, err := userns.ReadMap("/proc/self/uid_map")
	if err != nil {
		return nil, err
	}
	outerG, err := userns.ReadMap("/proc/self/gid_map")
	if err != nil {
		return nil, err
	}
	ru, err := userns.SubRange(outerU)
	if err != nil {
		return nil, err
	}
	rg, err := userns.SubRange(outerG)
	if err != nil {
		return nil, err
	}
	k := &keepID{spec: spec, user: container.User{UID: uint32(u.Uid), GID: uint32(u.Gid)}, home: u.Home}
	for _, g := range u.Sgids {
		if g != u.Gid {
			k.user.AdditionalGids = append(k.user.AdditionalGids, uint32(g))
		}
	}
	if k.maps.UID, err = userns.KeepID(k.user.UID, ru); err != nil {
		return nil, &config.UsageError{Err: fmt.Errorf("--user %s: %w: grant a larger range in /etc/subuid", spec, err)}
	}
	if k.maps.GID, err = userns.KeepID(k.user.GID, rg); err != nil {
		return nil, &config.UsageError{Err: fmt.Errorf("--user %s: %w: grant a larger range in /etc/subgid", spec, err)}
	}
	for _, g := range k.user.AdditionalGids {
		if g > rg.Len {
			return nil, &config.UsageError{Err: fmt.Errorf("--user %s: supplementary group %d is above the %d subordinate gids: grant a larger range in /etc/subgid", spec, g, rg.Len)}
		}
	}
	hostU, err := userns.ComposeMap(k.maps.UID, outerU)
	if err != nil {
		return nil, err
	}
	hostG, err := userns.ComposeMap(k.maps.GID, outerG)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(userns.Key(hostU, hostG)))
	k.key = hex.EncodeToString(sum[:6])
	return k, nil
}

// idMap is the map extracted trees get for k.
func (k *keepID) idMap() *rootfs.IDMap {
	return &rootfs.IDMap{UID: k.maps.UID, GID: k.maps.GID, Key: k.key}
}

// lookupUser resolves a --user (NAME, UID, NAME:GROUP, UID:GID) against
// the tree's /etc/passwd and /etc/group as runc and Docker do: a name must
// be there; a uid that is not gets gid 0 and home /.
func lookupUser(spec, tree string) (*muser.ExecUser, error) {
	// Symlinks in the tree resolve inside it, as in the container.
	root, err := container.OpenRoot(tree)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	open := func(name string) (io.Reader, func(), error) {
		f, err := root.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			return strings.NewReader(""), func() {}, nil
		}
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	passwd, closeP, err := open("/etc/passwd")
	if err != nil {
		return nil, err
	}
	defer closeP()
	group, closeG, err := open("/etc/group")
	if err != nil {
		return nil, err
	}
	defer closeG()
	u, err := muser.GetExecUser(spec, &muser.ExecUser{Home: "/"}, passwd, group)
	if err != nil {
		return nil, &config.UsageError{Err: fmt.Errorf("--user %s: %v in the rootfs's /etc/passwd and /etc/group: give a uid (--user 1000 or 1000:1000), or a user the rootfs has", spec, err)}
	}
	if u.Uid < 0 || u.Gid < 0 {
		return nil, &config.UsageError{Err: fmt.Errorf("--user %s: negative id", spec)}
	}
	return u, nil
}
