package main

// The --user (keep-id) figures: what running the command as a non-root
// container user costs, against the same without --user. With --user,
// mrtd runs itself again in its own user namespace (newuidmap and
// newgidmap write the maps; the first process stays as a shim), looks the
// user up in the rootfs and runs the container in a copy of the tree
// chowned through the map (cache entry <key>+<hash>).
//
//   - warm start: `mrtd run --user 1000 -- /bin/true` vs. `mrtd run --
//     /bin/true`, each with its own warm cache of the embedded rootfs (for
//     --user, the tree and its mapped copy), alternating;
//   - restart: SIGKILL of worker 0's init until it runs again (as pool.go's
//     restart, backoff 1ms), in a pool with --user 1000 vs. one without,
//     both running side by side, the kills alternating;
//   - first run with an empty cache dir, --user vs. not, alternating: --user
//     extracts the rootfs twice (the tree the user is looked up in, then
//     its copy through the map), so about 2x; mrtd's logged extraction
//     durations are reported apart. At most keepidColdMax runs a side, and
//     measured first: the caches of its last samples are the warm caches
//     of the two figures above.
//
// The embedded rootfs has no uid 1000 in /etc/passwd: the command runs as
// uid 1000, gid 0, as runc and Docker do.
//
// mrtd run by root refuses a non-root --user: it needs mrtd to run as an
// unprivileged user with a subordinate id range. When bench runs as root, every mrtd of these figures, with --user or
// without, runs as uid 65534 through the wrapping e2e's tests use
// (internal/mrtdtest's WithSubIDs): `unshare --mount`, a file granting
// 65534 the range 200000:65536 bind-mounted over /etc/subuid and
// /etc/subgid (the host's files are left alone), then `setpriv`. Both
// sides of every ratio go through the same wrapper, so its cost (a few ms)
// is in the floor as in the figure and cancels in their difference (it
// brings the ratio a little closer to 1). As another user, mrtd runs as
// that user, unwrapped, who needs a range in /etc/subuid and /etc/subgid;
// without one, the figures are skipped, saying why.

import (
	"archive/tar"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

var (
	keepidFlag = flag.Bool("keepid", true, "measure the --user (keep-id) figures (needs newuidmap and newgidmap and, unless bench runs as root, a range in /etc/subuid and /etc/subgid)")
	keepidOnly = flag.Bool("keepid-only", false, "measure only the --user (keep-id) figures")
)

// keepidUser is the --user of the figures.
const keepidUser = "1000"

// keepidColdMax caps the runs of the first-run figure (-cold-n, when
// lower, wins): each --user sample extracts the rootfs twice, and each
// tree made is removed at the end, about a second apiece.
const keepidColdMax = 3

// keepidBench is the keep-id figures' state, for cleanup.
type keepidBench struct {
	*bench
	dir string
	// unshare and grant wrap every mrtd when bench runs as root (see
	// wrap); both are empty otherwise.
	unshare, grant string
	env            []string // mrtd's environment; nil: bench's
	// userCaches are pruned at cleanup: when bench does not run as
	// root, only `mrtd prune` (in mrtd's user namespace) can remove the
	// trees made for --user.
	userCaches []userCache
	pools      []*poolBench // stopped at cleanup
}

// userCache is a cache holding trees made for --user, and the runtime dir
// of the mrtds that used it.
type userCache struct{ cache, runtime string }

// keepidSide is one side of the keep-id figures: with --user or without.
type keepidSide struct {
	name        string   // "user" or "plain", in directory names
	flags       []string // mrtd's flags for this side
	cache       string   // warm cache of the embedded rootfs, once made
	runtime     string   // mrtd run's --runtime-dir
	poolRuntime string   // the pool's --runtime-dir
}

// side makes the directories of one side of the keep-id figures, whose
// mrtds get flags.
func (k *keepidBench) side(name string, flags ...string) (*keepidSide, error) {
	s := &keepidSide{
		name:        name,
		flags:       flags,
		runtime:     filepath.Join(k.dir, "run-"+name),
		poolRuntime: filepath.Join(k.dir, "pool-run-"+name),
	}
	for _, d := range []string{s.runtime, s.poolRuntime} {
		if err := k.userDir(d); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// user reports whether the side runs mrtd with --user.
func (s *keepidSide) user() bool { return len(s.flags) > 0 }

// keepidHost returns why this host cannot run the keep-id figures, in a
// few words and in full, or "".
func keepidHost(root bool) (short, long string) {
	tools := []string{"newuidmap", "newgidmap"}
	if root {
		tools = append(tools, "unshare", "setpriv")
	}
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		short = "no " + strings.Join(missing, ", ")
		return short, short + " on this host (Debian's uidmap and util-linux)"
	}
	uid := os.Geteuid()
	name := strconv.Itoa(uid)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		data, err := os.ReadFile(f)
		switch {
		case root && err != nil:
			// The fake range is bind-mounted over the file.
			return "no " + f, fmt.Sprintf("%v: the fake range is bind-mounted over it", err)
		case !root && !hasSubIDLine(string(data), name, uid):
			return fmt.Sprintf("no range for %s in %s", name, f),
				fmt.Sprintf("%s grants %s (uid %d) no range: --user needs one (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s)", f, name, uid, name)
		}
	}
	return "", ""
}

// hasSubIDLine reports whether a subuid or subgid file has a line for name
// or uid.
func hasSubIDLine(s, name string, uid int) bool {
	for line := range strings.Lines(s) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) == 3 && (f[0] == name || f[0] == strconv.Itoa(uid)) {
			return true
		}
	}
	return false
}

// keepidFigures measures the keep-id figures.
func (b *bench) keepidFigures() ([]row, []*samples, error) {
	skipRows := func(why string) []row {
		return []row{{figure: "--user " + keepidUser + " (keep-id) figures", skip: "skipped: " + why}}
	}
	if short, long := keepidHost(b.root); short != "" {
		fmt.Fprintf(os.Stderr, "bench: keep-id figures skipped: %s\n", long)
		return skipRows(short), nil, nil
	}
	k := &keepidBench{bench: b, dir: filepath.Join(b.tmp, "keepid")}
	b.keep = k
	if err := k.userDir(k.dir); err != nil {
		return nil, nil, err
	}
	if b.root {
		var err error
		if k.unshare, err = exec.LookPath("unshare"); err != nil {
			return nil, nil, err
		}
		home := filepath.Join(k.dir, "home")
		if err := k.userDir(home); err != nil {
			return nil, nil, err
		}
		// As e2e's: mrtd as uid 65534 with a home of its own, and the
		// PATH that finds newuidmap and newgidmap.
		k.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8"}
		k.grant = filepath.Join(k.dir, "subid")
		line := fmt.Sprintf("%d:%d:%d\n", b.uid, mrtdtest.SubIDStart, mrtdtest.SubIDLen)
		if err := os.WriteFile(k.grant, []byte(line), 0o644); err != nil {
			return nil, nil, err
		}
	}
	user, err := k.side("user", "--user", keepidUser)
	if err != nil {
		return nil, nil, err
	}
	plain, err := k.side("plain")
	if err != nil {
		return nil, nil, err
	}

	// 1. First run with an empty cache dir, measured first: the caches of
	// its last samples are the warm caches of the other figures, so that
	// no extraction is spent on warming them. A host that cannot make the
	// user namespace (user namespaces disabled, newuidmap refusing the
	// range) fails the first run, with --user: the figures are skipped
	// with mrtd's words, and the figures measured before are kept.
	coldRuns := min(*coldN, keepidColdMax)
	fmt.Fprintf(os.Stderr, "bench: keep-id: first run with an empty cache, --user %s vs. without (%d runs) ...\n", keepidUser, coldRuns)
	coldUser := &samples{name: "mrtd run --user " + keepidUser + ", empty cache"}
	coldPlain := &samples{name: "mrtd run, empty cache (as --user's)"}
	loggedUser := &samples{name: "mrtd's logged extractions, --user"}
	loggedPlain := &samples{name: "mrtd's logged extraction, no --user"}
	size, err := archiveTreeSize(b.archive)
	if err != nil {
		return nil, nil, err
	}
	// On average a sample holds 1.5 trees.
	fresh, done, keep := b.freshDirs(k.dir, "cold", size*3/2)
	var unsupported error
	cold := func(s *keepidSide, logged *samples) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			d, err := fresh()
			if err != nil {
				return 0, err
			}
			cache := filepath.Join(d, "cache")
			if err := k.userDir(cache); err != nil {
				return 0, err
			}
			if s.user() && keep {
				k.userCaches = append(k.userCaches, userCache{cache, s.runtime})
			}
			defer func() {
				if s.user() && !keep {
					if err := k.prune(cache, s.runtime); err != nil {
						fmt.Fprintf(os.Stderr, "bench: %v\n", err)
					}
				}
				done(d)
			}()
			t, err := k.run(cache, s.runtime, s.flags...)
			if err != nil {
				if s.user() && len(coldUser.d) == 0 {
					unsupported = err
				}
				return 0, err
			}
			if keep {
				s.cache = cache
			}
			var sum time.Duration
			for _, ld := range b.loggedDurations("rootfs extracted") {
				sum += ld
			}
			if sum > 0 {
				logged.add(sum)
			}
			return t, nil
		}
	}
	// interleave starts with the first series: --user.
	err = interleave(0, coldRuns, series2(coldUser, cold(user, loggedUser)), series2(coldPlain, cold(plain, loggedPlain)))
	if unsupported != nil {
		fmt.Fprintf(os.Stderr, "bench: keep-id figures skipped: %v\n", unsupported)
		return skipRows("mrtd run --user " + keepidUser + " failed (see above)"), nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	coldRows := []row{{
		figure: fmt.Sprintf("first run --user %s, empty cache (n=%d)", keepidUser, len(coldUser.d)), value: coldUser.median(),
		floor: coldPlain.median(), floorWhat: k.floorWhat("first run, no --user"),
		targetText: "(info: ~2x, extracts twice)",
	}}
	if len(loggedUser.d) > 0 && len(loggedPlain.d) > 0 {
		coldRows = append(coldRows, row{
			figure: fmt.Sprintf("extractions --user (mrtd's log, n=%d)", len(loggedUser.d)), value: loggedUser.median(),
			floor: loggedPlain.median(), floorWhat: "extraction, no --user",
			targetText: "(info: ~2x)",
		})
	}
	// Without room to keep the samples' trees, warm caches of their own.
	for _, s := range []*keepidSide{user, plain} {
		if s.cache != "" {
			continue
		}
		s.cache = filepath.Join(k.dir, "cache-"+s.name)
		if err := k.userDir(s.cache); err != nil {
			return nil, nil, err
		}
		if s.user() {
			k.userCaches = append(k.userCaches, userCache{s.cache, s.runtime})
		}
		if _, err := k.run(s.cache, s.runtime, s.flags...); err != nil {
			return nil, nil, err
		}
	}

	var rows []row
	var series []*samples

	// 2. Warm start.
	fmt.Fprintf(os.Stderr, "bench: keep-id: warm start, --user %s vs. without (%d runs) ...\n", keepidUser, *n)
	warmUser := &samples{name: "mrtd run --user " + keepidUser + " (warm)"}
	warmPlain := &samples{name: "mrtd run, no --user (warm, as --user's)"}
	err = interleave(*warmup, *n,
		series2(warmUser, func() (time.Duration, error) { return k.run(user.cache, user.runtime, user.flags...) }),
		series2(warmPlain, func() (time.Duration, error) { return k.run(plain.cache, plain.runtime) }),
	)
	if err != nil {
		return nil, nil, err
	}
	series = append(series, warmUser, warmPlain)
	rows = append(rows, row{
		figure: fmt.Sprintf("warm start --user %s (n=%d)", keepidUser, len(warmUser.d)), value: warmUser.median(),
		floor: warmPlain.median(), floorWhat: k.floorWhat("mrtd run, no --user"),
		targetText: "(info)",
	})

	// 3. Restart of a pool's worker.
	fmt.Fprintf(os.Stderr, "bench: keep-id: restart after SIGKILL, pool with --user %s vs. without (%d runs) ...\n", keepidUser, *n)
	restartRow, restartSeries, err := k.restart(user, plain)
	if err != nil {
		return nil, nil, err
	}
	rows = append(rows, restartRow)
	series = append(series, restartSeries...)

	rows = append(rows, coldRows...)
	series = append(series, coldUser, coldPlain, loggedUser, loggedPlain)
	return rows, series, nil
}

// archiveTreeSize is the size of the regular files in a .tar.zst.
func archiveTreeSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			total += h.Size
		}
	}
}

// floorWhat names a floor of the keep-id figures, with the wrapper when
// there is one.
func (k *keepidBench) floorWhat(what string) string {
	if k.grant != "" {
		return what + ", same wrapper"
	}
	return what
}

// restart measures the restart after SIGKILL of worker 0 of a pool with
// --user, against a pool without it, both running at once.
func (k *keepidBench) restart(user, plain *keepidSide) (row, []*samples, error) {
	start := func(s *keepidSide) (*poolBench, *mrtdtest.Daemon, error) {
		p := &poolBench{bench: k.bench, cache: s.cache, runtime: s.poolRuntime, wrap: k.wrap, daemons: map[*mrtdtest.Daemon]bool{}}
		k.pools = append(k.pools, p)
		args := append([]string{"--backoff-min", "1ms", "--backoff-max", "1ms"}, s.flags...)
		d, _, err := p.start(1, args...)
		return p, d, err
	}
	pu, du, err := start(user)
	if err != nil {
		return row{}, nil, fmt.Errorf("pool with --user %s: %w", keepidUser, err)
	}
	defer pu.stop(du)
	pp, dp, err := start(plain)
	if err != nil {
		return row{}, nil, fmt.Errorf("pool without --user: %w", err)
	}
	defer pp.stop(dp)
	mu := &samples{name: "pool --user " + keepidUser + ": SIGKILL -> running"}
	mp := &samples{name: "pool, no --user: SIGKILL -> running"}
	err = interleave(*warmup, *n,
		series2(mu, func() (time.Duration, error) { return pu.killRestart(du) }),
		series2(mp, func() (time.Duration, error) { return pp.killRestart(dp) }),
	)
	if err != nil {
		return row{}, nil, err
	}
	for _, s := range []struct {
		p *poolBench
		d *mrtdtest.Daemon
	}{{pu, du}, {pp, dp}} {
		if err := s.p.stop(s.d); err != nil {
			return row{}, nil, err
		}
	}
	return row{
		figure: fmt.Sprintf("restart after SIGKILL --user %s (n=%d)", keepidUser, len(mu.d)), value: mu.median(),
		floor: mp.median(), floorWhat: k.floorWhat("restart, no --user"),
		targetText: "(info)",
	}, []*samples{mu, mp}, nil
}

// run times one `mrtd run -- /bin/true` as the keep-id figures run mrtd.
func (k *keepidBench) run(cache, runtime string, extra ...string) (time.Duration, error) {
	args := append([]string{"run", "--cache-dir", cache, "--runtime-dir", runtime}, extra...)
	args = append(args, "--", "/bin/true")
	cmd := exec.Command(k.mrtd, args...)
	k.wrap(cmd)
	return k.timeExec(cmd)
}

// wrap makes cmd, mrtd, run as the keep-id figures run it. As root, that
// is as internal/mrtdtest's WithSubIDs does: under `unshare --mount`, with
// the grant bind-mounted over /etc/subuid and /etc/subgid, then as
// b.uid through setpriv. Otherwise cmd is left as it is.
func (k *keepidBench) wrap(cmd *exec.Cmd) {
	if k.env != nil {
		cmd.Env = k.env
	}
	if k.grant == "" {
		return
	}
	// sh -c SCRIPT GRANT UID GID BIN ARGS...: $0 is GRANT.
	script := `u=$1 g=$2; shift 2; mount --bind "$0" /etc/subuid && mount --bind "$0" /etc/subgid && exec setpriv --reuid "$u" --regid "$g" --clear-groups -- "$@"`
	args := []string{k.unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, k.grant,
		strconv.Itoa(int(k.uid)), strconv.Itoa(int(k.gid)), cmd.Path}
	cmd.Args = append(args, cmd.Args[1:]...)
	cmd.Path = k.unshare
}

// userDir makes a directory mrtd, as the keep-id figures run it, owns.
func (k *keepidBench) userDir(d string) error {
	if err := os.Mkdir(d, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(d, 0o755); err != nil {
		return err
	}
	if k.root {
		return os.Chown(d, int(k.uid), int(k.gid))
	}
	return nil
}

// prune removes cache's trees made for --user with `mrtd prune`, which
// runs in mrtd's user namespace: bench, when not root, cannot remove
// their files. As root, rootfs.RemoveTree can, and prune does nothing.
func (k *keepidBench) prune(cache, runtime string) error {
	if k.root {
		return nil
	}
	cmd := exec.Command(k.mrtd, "prune", "--cache-dir", cache, "--runtime-dir", runtime)
	k.wrap(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("mrtd prune --cache-dir %s: %v\n%s", cache, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// cleanup stops the pools still running and, when bench does not run as
// root, prunes the caches holding trees made for --user.
func (k *keepidBench) cleanup() {
	var errs []error
	for _, p := range k.pools {
		p.stopAll()
	}
	for _, c := range k.userCaches {
		errs = append(errs, k.prune(c.cache, c.runtime))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	}
}

// keepidSummary is the keep-id figures' line of the header.
func keepidSummary(root bool, uid uint32) string {
	who := "as this user, who needs a subordinate range"
	if root {
		who = fmt.Sprintf("both sides as uid %d with the range %d:%d faked (unshare -m, bind mounts over /etc/subuid and /etc/subgid, setpriv)",
			uid, mrtdtest.SubIDStart, mrtdtest.SubIDLen)
	}
	return fmt.Sprintf("keep-id: --user %s vs. no --user, embedded rootfs, %s;\n"+
		"  warm start %d runs, restart %d runs (%d warm-up each), first run with an empty cache %d runs (at most %d)",
		keepidUser, who, *n, *n, *warmup, min(*coldN, keepidColdMax), keepidColdMax)
}
