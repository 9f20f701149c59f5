package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/daemon"
	"github.com/mrt-project/mrt/image"
	"github.com/mrt-project/mrt/internal/userns"
	"github.com/mrt-project/mrt/rootfs"
)

const imagesUsage = `Usage: mrtd images [--json] [--cache-dir DIR] [--runtime-dir DIR]

List the images in the cache: the references recorded for each, as --image
takes them (tags, REPOSITORY@sha256:... for a pull by digest, oci:/PATH[:TAG]
and docker-archive:/PATH for local sources), its manifest digest, the space
its blobs and its extracted tree take, when a start last used it, and which
mrtd processes use it now (found through the locks they hold; an instance
is named when its runtime dir is DIR).

Flags:
`

const pruneUsage = `Usage: mrtd prune [--cache-dir DIR] [--runtime-dir DIR]

Remove from the cache the images no process uses (their trees, the blobs
no remaining image references, their tags), and what every start prunes
(trees and runc binaries no process uses); print what was removed and the
space freed. An image a running mrtd uses is never removed.

Flags:
`

// imagesCommand runs mrtd images, and mrtd prune when prune is set.
func imagesCommand(prune bool, args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Default(userns.EUID(), os.Getenv)
	if err != nil {
		return fail(stderr, err)
	}
	name, usage := "images", imagesUsage
	if prune {
		name, usage = "prune", pruneUsage
	}
	jsonOut := false
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&cfg.CacheDir, "cache-dir", cfg.CacheDir, "the cache `DIR`; images are in DIR/images and DIR/rootfs")
	fs.StringVar(&cfg.RuntimeDir, "runtime-dir", cfg.RuntimeDir, "the running mrtds' runtime `DIR`, to name their instances")
	if !prune {
		fs.BoolVar(&jsonOut, "json", false, "print JSON")
	}
	if err := config.ParseFlags(fs, args); errors.Is(err, config.ErrHelp) {
		fmt.Fprint(stdout, usage)
		printFlags(stdout, fs)
		return 0
	} else if err != nil {
		return fail(stderr, err)
	}
	if fs.NArg() != 0 {
		return fail(stderr, &config.UsageError{Err: fmt.Errorf("mrtd %s takes no arguments (see `mrtd %s --help`)", name, name)})
	}
	if cfg.CacheDir == "" {
		return fail(stderr, &config.UsageError{Err: errors.New("no cache dir: set HOME or XDG_CACHE_HOME, or pass --cache-dir")})
	}
	if prune {
		// Trees made for --user belong to subordinate ids: only mrtd's
		// own user namespace can remove them.
		if status, entered, err := daemon.EnterUserNamespaceToPrune(cfg.CacheDir); err != nil {
			return fail(stderr, err)
		} else if entered {
			return status
		}
	}
	// What was removed is printed: the cache's own log lines would say it
	// twice.
	_, _, inside := userns.Inside()
	trees := &rootfs.Cache{Dir: cfg.CacheDir, MappedTrees: inside, Log: logr.Discard()}
	blobs := filepath.Join(cfg.CacheDir, "images")
	h := holders{runtimeDir: cfg.RuntimeDir, proc: "/proc"}
	if prune {
		// Keep what this binary would use, as every start does.
		var keep []string
		if emb, err := rootfs.Builtin(); err == nil {
			keep = append(keep, trees.RuncPath(emb.RuncDigest), trees.RootfsPath(emb.RootfsDigest), trees.InitPath(emb.InitDigest))
		}
		p, err := image.Prune(trees, blobs, keep...)
		if err != nil {
			return fail(stderr, err)
		}
		printPruned(stdout, p, h)
		return 0
	}
	imgs, err := image.List(trees, blobs)
	if err != nil {
		return fail(stderr, err)
	}
	if jsonOut {
		type listed struct {
			image.Cached
			UsedBy []holder `json:"usedBy,omitempty"`
		}
		out := []listed{}
		for _, img := range imgs {
			out = append(out, listed{Cached: img, UsedBy: h.of(img.Pids)})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return fail(stderr, err)
		}
		return 0
	}
	printImages(stdout, imgs, h, time.Now())
	return 0
}

// printImages writes imgs as a table, one line per image.
func printImages(w io.Writer, imgs []image.Cached, h holders, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "REFERENCE\tDIGEST\tBLOBS\tTREE\tLAST USED\tUSED BY")
	for _, img := range imgs {
		blobs := "-"
		if img.BlobBytes > 0 {
			blobs = formatSize(img.BlobBytes)
			if !img.Complete {
				blobs += " (partial)"
			}
		}
		tree := "-"
		if img.Tree != "" {
			tree = formatSize(img.TreeBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", refsOf(img), shortDigest(img.Digest), blobs, tree,
			lastUsed(img, now), usedBy(img, h))
	}
	tw.Flush()
}

// printPruned says what Prune removed, kept, and freed.
func printPruned(w io.Writer, p *image.Pruned, h holders) {
	for _, img := range p.Images {
		fmt.Fprintf(w, "removed %s %s (%s)\n", refsOf(img.Cached), shortDigest(img.Digest), formatSize(img.Freed))
	}
	for _, e := range p.Entries {
		fmt.Fprintf(w, "removed %s\n", e)
	}
	for _, img := range p.Kept {
		why := "a pull of it is under way"
		switch {
		case img.InUse:
			why = "in use by " + usedBy(img, h)
		case slices.Contains(p.KeptMapped, img.Digest):
			why = "it has trees made for --user, which only mrtd's user namespace can remove: run mrtd prune where newuidmap works and you have subordinate ids"
		}
		fmt.Fprintf(w, "kept %s %s: %s\n", refsOf(img), shortDigest(img.Digest), why)
	}
	fmt.Fprintf(w, "freed %s\n", formatSize(p.Bytes))
}

func refsOf(img image.Cached) string {
	if len(img.Refs) == 0 {
		return "<none>"
	}
	return strings.Join(img.Refs, ",")
}

// shortDigest is sha256: and the first 12 hex digits, as docker images
// shows image IDs.
func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func lastUsed(img image.Cached, now time.Time) string {
	switch {
	case img.InUse:
		return "now"
	case img.LastUsed.IsZero():
		return "-"
	}
	d := now.Sub(img.LastUsed)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

func usedBy(img image.Cached, h holders) string {
	if !img.InUse {
		return "-"
	}
	hs := h.of(img.Pids)
	if len(hs) == 0 {
		// Another pid namespace, or no /proc: the lock says it is used.
		return "a process not visible here"
	}
	var out []string
	for _, x := range hs {
		out = append(out, x.String())
	}
	return strings.Join(out, ", ")
}

// formatSize says n bytes in binary units, as du -h does.
func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}

// holder is a process using an image.
type holder struct {
	Pid int `json:"pid"`
	// Instance is the mrtd instance the process runs, when known;
	// Command is "run" for mrtd run, else its command line.
	Instance string `json:"instance,omitempty"`
	Command  string `json:"command,omitempty"`
}

func (h holder) String() string {
	switch {
	case h.Instance != "":
		return fmt.Sprintf("instance %s (pid %d)", h.Instance, h.Pid)
	case h.Command == "run":
		return fmt.Sprintf("mrtd run (pid %d)", h.Pid)
	case h.Command != "":
		return fmt.Sprintf("pid %d (%s)", h.Pid, h.Command)
	}
	return fmt.Sprintf("pid %d", h.Pid)
}

// holders names the processes holding an image's lock. A pool daemon
// writes its pid into <runtime-dir>/<instance>.lock, which names its
// instance when runtimeDir is the daemon's; otherwise its command line's
// --instance does, if it has one.
type holders struct {
	runtimeDir string
	proc       string // /proc, or a test's
}

func (h holders) of(pids []int) []holder {
	var out []holder
	var byPid map[int]string
	for _, pid := range pids {
		x := holder{Pid: pid}
		args := h.cmdline(pid)
		switch {
		case len(args) > 1 && args[1] == "run":
			x.Command = "run"
		default:
			if byPid == nil {
				byPid = h.instances()
			}
			x.Instance = byPid[pid]
			if x.Instance == "" {
				x.Instance = flagValue(args, "instance")
			}
			x.Command = strings.Join(args, " ")
		}
		out = append(out, x)
	}
	return out
}

func (h holders) cmdline(pid int) []string {
	b, err := os.ReadFile(filepath.Join(h.proc, strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// instances maps the pids written in the runtime dir's instance lock files
// to their instance names.
func (h holders) instances() map[int]string {
	out := map[int]string{}
	locks, _ := filepath.Glob(filepath.Join(h.runtimeDir, "*.lock"))
	for _, p := range locks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			out[pid] = strings.TrimSuffix(filepath.Base(p), ".lock")
		}
	}
	return out
}

// flagValue returns the value of --name or -name in args, "" without one.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, p := range []string{"--" + name, "-" + name} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
		}
	}
	return ""
}
