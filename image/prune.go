package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/rootfs"
)

// Pruned is what Prune removed and kept.
type Pruned struct {
	// Images are the images removed: their trees, the blobs no image left
	// references, and the tags that named them.
	Images []RemovedImage `json:"images"`
	// Entries are the other things removed, by path: trees and runc
	// binaries no process uses (what every start prunes), blobs no image
	// references, tags whose image is gone.
	Entries []string `json:"entries"`
	// Bytes is the disk space freed, all counted.
	Bytes int64 `json:"bytes"`
	// Kept are the images kept: a process uses them (InUse), a pull of
	// them is under way, or they have trees made through an id map that
	// this process may not remove (KeptMapped).
	Kept []Cached `json:"kept"`
	// KeptMapped are the digests of the images among Kept that Prune
	// would have removed, but for their trees made for --user (keep-id
	// containers, Cached.MappedTrees): only a process in mrtd's user
	// namespace, whose Cache has MappedTrees set, removes those. Such an
	// image is kept whole, its tree made through no map too.
	KeptMapped []string `json:"keptMapped,omitempty"`
}

// RemovedImage is an image Prune removed.
type RemovedImage struct {
	Cached
	// Freed is the disk space its removal freed: its tree, and its blobs
	// no image left shares.
	Freed int64 `json:"freed"`
	// release lets starts use the image again, once its blobs are gone.
	release func()
}

// pullGrace is how long blobs no complete image accounts for are kept: a
// pull may be writing the rest of their image.
const pullGrace = 10 * time.Minute

// Prune removes from the cache the images no process uses: their trees
// (through trees.Prune, which removes, under its rules, every entry no
// process uses but those in keep), then the blobs no remaining image
// references and the tags of the images removed. An image a process uses
// is never removed: it holds one of its trees' locks, and Prune takes the
// lock of each of the image's trees exclusively (rootfs.Cache.Claim)
// before removing its blobs, so no start can begin using it meanwhile. A
// start that resolved an image just before Prune removed its blobs fetches
// them again.
//
// An image's trees made through an id map, for --user, are removed only
// when trees.MappedTrees (or trees.IDMap) is set, as trees.Prune removes
// them; otherwise an image that has such trees is kept whole, and named
// in KeptMapped.
//
// A cache this process cannot write into is not pruned: that is an error.
func Prune(trees *rootfs.Cache, dir string, keep ...string) (*Pruned, error) {
	return prune(trees, dir, keep, time.Now())
}

func prune(trees *rootfs.Cache, dir string, keep []string, now time.Time) (*Pruned, error) {
	if _, err := os.Stat(trees.Dir); errors.Is(err, os.ErrNotExist) {
		return &Pruned{}, nil
	}
	for _, d := range []string{trees.Dir, dir} {
		err := unix.Access(d, unix.W_OK|unix.X_OK)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("cannot prune the cache dir %s: %s: %w", trees.Dir, d, err)
		}
	}
	st := &store{dir: dir}
	st.removeTemps()
	c, err := scan(dir)
	if err != nil {
		return nil, err
	}
	before := listed(trees, c)
	sizes := map[string]int64{}
	for _, p := range trees.Entries() {
		if trees.ImageDigest(p) == "" {
			sizes[p] = rootfs.DiskUsage(p)
		}
	}
	// As trees.Prune decides: a process outside the user namespace
	// that owns the mapped trees leaves them, so it keeps their images
	// whole.
	changesMapped := trees.MappedTrees || trees.IDMap != nil
	if !changesMapped {
		keep = slices.Clone(keep)
		for _, img := range before {
			if len(img.MappedTrees) > 0 {
				keep = append(keep, unmappedPath(trees, img.Digest))
			}
		}
	}

	if err := trees.Prune(keep...); err != nil {
		return nil, err
	}
	out := &Pruned{}
	for p, n := range sizes {
		if !exists(p) {
			out.Entries = append(out.Entries, p)
			out.Bytes += n
		}
	}

	// Which images go: those whose trees are all gone (or never were),
	// that no process uses, and that no pull is completing.
	downloading := downloads(dir)
	kept := map[string]bool{} // hex digests of the images kept
	var removed []*RemovedImage
	defer func() {
		for _, r := range removed {
			if r.release != nil {
				r.release()
			}
		}
	}()
	for _, img := range before {
		h := hexOf(img.Digest)
		keepIt := func() {
			kept[h] = true
			out.Kept = append(out.Kept, img)
		}
		pulling := !img.Complete && (now.Sub(img.newest) < pullGrace || img.lacksAny(c, downloading))
		paths := img.treePaths(trees)
		if slices.ContainsFunc(paths, exists) {
			keepIt()
			if len(img.MappedTrees) > 0 && !changesMapped && !img.InUse && !pulling {
				out.KeptMapped = append(out.KeptMapped, img.Digest)
			}
			continue
		}
		if pulling {
			keepIt()
			continue
		}
		release, err := claimAll(trees, paths)
		if errors.Is(err, rootfs.ErrInUse) {
			img.InUse = true
			keepIt()
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(imageTrees(trees, img.Digest)) > 0 {
			// Made again since trees.Prune: in use after all.
			release()
			keepIt()
			continue
		}
		r := &RemovedImage{Cached: img, Freed: img.TreeBytes}
		r.release = release
		removed = append(removed, r)
	}

	// What the images kept need: their blobs, the indexes that lead to
	// them, the tags that name them.
	need := map[string]bool{}
	leadsToKept := func(h string) bool {
		return slices.ContainsFunc(c.manifestsUnder(h, 0), func(m string) bool { return kept[m] })
	}
	for _, img := range before {
		if kept[hexOf(img.Digest)] {
			for _, b := range img.blobs {
				need[b] = true
			}
		}
	}
	for h, b := range c.blobs {
		if b.index != nil && leadsToKept(h) {
			need[h] = true
		}
	}
	owner := map[string]*RemovedImage{} // blob or tag -> the removed image it is counted with
	for _, r := range removed {
		out.Bytes += r.TreeBytes
		for _, b := range r.blobs {
			if owner[b] == nil {
				owner[b] = r
			}
		}
		for _, ref := range r.Refs {
			if owner["ref:"+ref] == nil {
				owner["ref:"+ref] = r
			}
		}
	}

	// Tags first, then indexes, then manifests, then the rest: a crash
	// half way leaves blobs no tag leads to, never a tag that leads to a
	// manifest without its blobs.
	for _, rec := range c.records {
		if h := hexOf(rec.Digest); kept[h] || leadsToKept(h) {
			continue
		}
		n := rootfs.DiskUsage(rec.path)
		if err := os.Remove(rec.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pruning the image cache: %w", err)
		}
		out.Bytes += n
		if r := owner["ref:"+rec.Name]; r != nil {
			r.Freed += n
		} else {
			out.Entries = append(out.Entries, rec.path)
		}
	}
	hexes := make([]string, 0, len(c.blobs))
	for h := range c.blobs {
		hexes = append(hexes, h)
	}
	rank := func(b *blobInfo) int {
		switch {
		case b.index != nil:
			return 0
		case b.manifest != nil:
			return 1
		}
		return 2
	}
	slices.SortFunc(hexes, func(a, b string) int {
		if d := rank(c.blobs[a]) - rank(c.blobs[b]); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, h := range hexes {
		b := c.blobs[h]
		r := owner[h]
		if need[h] || r == nil && now.Sub(b.mtime) < pullGrace {
			continue // needed, or perhaps a pull's under way
		}
		if err := os.Remove(b.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pruning the image cache: %w", err)
		}
		out.Bytes += b.bytes
		if r != nil {
			r.Freed += b.bytes
		} else {
			out.Entries = append(out.Entries, b.path)
		}
	}
	if err := syncDir(filepath.Join(dir, "blobs", "sha256")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pruning the image cache: %w", err)
	}
	for _, r := range removed {
		out.Images = append(out.Images, *r)
	}
	slices.Sort(out.Entries)
	return out, nil
}

// claimAll claims every entry in paths (rootfs.Cache.Claim), or none:
// release lets them all go.
func claimAll(trees *rootfs.Cache, paths []string) (release func(), err error) {
	var releases []func()
	release = func() {
		for _, r := range releases {
			r()
		}
	}
	for _, p := range paths {
		r, err := trees.Claim(p)
		if err != nil {
			release()
			return nil, err
		}
		releases = append(releases, r)
	}
	return release, nil
}

// imageTrees returns the paths of the trees of the image with this digest
// that the cache holds now, made through an id map or not.
func imageTrees(trees *rootfs.Cache, digest string) []string {
	var out []string
	for _, p := range trees.Entries() {
		if trees.ImageDigest(p) == digest {
			out = append(out, p)
		}
	}
	return out
}

// lacksAny reports whether a blob img lacks is being downloaded: a
// temporary file named after its digest, locked by the process writing it.
func (img *Cached) lacksAny(c *contents, downloading map[string]bool) bool {
	m := c.blobs[hexOf(img.Digest)]
	if m == nil || m.manifest == nil {
		return false
	}
	for _, l := range append(m.manifest.Layers, m.manifest.Config) {
		if h := l.Digest.Hex; len(h) >= 12 && c.blobs[h] == nil && downloading[h[:12]] {
			return true
		}
	}
	return false
}

// downloads returns the digest prefixes (12 hex digits) of the blobs a
// process is writing into the blob cache now: store.write names its
// temporary file after it and holds it locked.
func downloads(dir string) map[string]bool {
	out := map[string]bool{}
	bdir := filepath.Join(dir, "blobs", "sha256")
	ents, _ := os.ReadDir(bdir)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), ".tmp-")
		if !ok || len(rest) < 12 {
			continue
		}
		f, err := os.Open(filepath.Join(bdir, e.Name()))
		if err != nil {
			continue
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
			out[rest[:12]] = true
		}
		f.Close()
	}
	return out
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
