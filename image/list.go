package image

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mrt-project/mrt/rootfs"
)

// Cached is an image in the cache: its blobs in the blob cache, its tree
// in the rootfs cache, or both.
type Cached struct {
	// Digest is the image's manifest digest, "sha256:<hex>" (a
	// docker-archive's tree is keyed by its config digest).
	Digest string `json:"digest"`
	// Refs are the references recorded as naming it, each as --image
	// takes it: the tags resolved to it, directly or through an index, and
	// the digest references (REPOSITORY@sha256:...), OCI layouts
	// (oci:/PATH[:TAG]) and docker-archives (docker-archive:/PATH) it was
	// pulled or started from, with absolute paths. None for an image
	// whose references are gone or were never recorded.
	Refs []string `json:"refs"`
	// Pulled is when one of Refs was last recorded; zero without Refs.
	Pulled time.Time `json:"pulled,omitzero"`
	// BlobBytes is the disk space its blobs take (manifest, config,
	// layers), blobs it shares with other images included; Complete is
	// set when the cache holds all of them.
	BlobBytes int64 `json:"blobBytes"`
	Complete  bool  `json:"complete"`
	// Tree is its flattened tree's path: the one made without an id map,
	// or, when there is none, the first of MappedTrees; "" when it has no
	// tree at all. TreeBytes is the disk space all its trees take,
	// MappedTrees' included.
	Tree      string `json:"tree,omitempty"`
	TreeBytes int64  `json:"treeBytes"`
	// MappedTrees are its trees made through an id map, for --user
	// (keep-id) containers, by Key. Their files are owned by ids of
	// mrtd's user namespace: only a process in it removes them (see
	// Pruned.KeptMapped).
	MappedTrees []MappedTree `json:"mappedTrees,omitempty"`
	// LastUsed is when a start last used one of its trees, as far as the
	// cache records it (rootfs.Usage); zero when unknown.
	LastUsed time.Time `json:"lastUsed,omitzero"`
	// InUse is set when a process holds one of its trees, mapped or not;
	// Pids are those found, of all its trees.
	InUse bool  `json:"inUse"`
	Pids  []int `json:"pids,omitempty"`

	// blobs are the hex digests of its manifest, config and layers that
	// the cache holds; newest is the latest modification among them.
	blobs  []string
	newest time.Time
}

// MappedTree is an image's tree made through an id map (rootfs.IDMap).
type MappedTree struct {
	// Key is the map's key (rootfs.Cache.MappedKey), Path the tree.
	Key  string `json:"key"`
	Path string `json:"path"`
	// Bytes is the disk space it takes.
	Bytes int64 `json:"bytes"`
	// InUse is set when a process holds it; Pids are those found.
	InUse bool  `json:"inUse"`
	Pids  []int `json:"pids,omitempty"`
}

// blobInfo is a blob in the blob cache.
type blobInfo struct {
	path  string
	bytes int64 // on disk
	mtime time.Time
	// One of these is set for a manifest or an index.
	manifest *v1.Manifest
	index    *v1.IndexManifest
}

// recordFile is a tag's record and where it is kept.
type recordFile struct {
	path string
	record
}

// contents is what the blob cache holds.
type contents struct {
	blobs   map[string]*blobInfo // by hex digest
	records []recordFile
}

// maxManifest bounds the blobs read to find manifests and indexes: a
// manifest of an image with a thousand layers is well below it.
const maxManifest = 4 << 20

// scan reads the blob cache at dir: every blob's size, the manifests and
// indexes among them, and the tags' records.
func scan(dir string) (*contents, error) {
	c := &contents{blobs: map[string]*blobInfo{}}
	bdir := filepath.Join(dir, "blobs", "sha256")
	ents, err := os.ReadDir(bdir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for _, e := range ents {
		n := e.Name()
		if !validHex(n) || !e.Type().IsRegular() {
			continue // downloads under way (.tmp-*), anything not ours
		}
		p := filepath.Join(bdir, n)
		fi, err := e.Info()
		if err != nil {
			continue
		}
		b := &blobInfo{path: p, bytes: rootfs.DiskUsage(p), mtime: fi.ModTime()}
		if fi.Size() <= maxManifest {
			b.manifest, b.index = readManifest(p)
		}
		c.blobs[n] = b
	}
	rdir := filepath.Join(dir, "refs")
	ents, err = os.ReadDir(rdir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	s := &store{dir: dir}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(rdir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var r record
		if json.Unmarshal(data, &r) != nil || s.refPath(r.Name) != p {
			continue // not a record of ours
		}
		c.records = append(c.records, recordFile{path: p, record: r})
	}
	return c, nil
}

// readManifest parses the blob at p when it is a manifest or an index.
func readManifest(p string) (*v1.Manifest, *v1.IndexManifest) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	var first [1]byte
	// Layers (gzip, zstd, tar) do not start with '{': read no further.
	if _, err := io.ReadFull(f, first[:]); err != nil || first[0] != '{' {
		return nil, nil
	}
	raw, err := io.ReadAll(io.MultiReader(strings.NewReader("{"), f))
	if err != nil {
		return nil, nil
	}
	m, err := parseManifest(raw)
	if err != nil {
		return nil, nil // a config, or not ours
	}
	return m.manifest, m.index
}

func validHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// hexOf returns the hex of a sha256 digest, or "".
func hexOf(d string) string {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || !validHex(h) {
		return ""
	}
	return h
}

// manifestsUnder returns the hex digests of the manifests that the blob h
// is or leads to (an index's children, to two levels, as resolve follows
// them), as far as the cache holds them.
func (c *contents) manifestsUnder(h string, depth int) []string {
	b := c.blobs[h]
	switch {
	case b == nil:
		return nil
	case b.manifest != nil:
		return []string{h}
	case b.index != nil && depth < 3:
		var out []string
		for _, d := range b.index.Manifests {
			if d.Digest.Algorithm == "sha256" {
				out = append(out, c.manifestsUnder(d.Digest.Hex, depth+1)...)
			}
		}
		return out
	}
	return nil
}

// images returns the cache's images, without their trees: one per
// manifest the blob cache holds.
func (c *contents) images() map[string]*Cached {
	out := map[string]*Cached{}
	for h, b := range c.blobs {
		if b.manifest == nil {
			continue
		}
		img := &Cached{Digest: "sha256:" + h, Complete: true}
		add := func(d v1.Hash) {
			if d.Algorithm != "sha256" {
				return
			}
			bb := c.blobs[d.Hex]
			if bb == nil {
				img.Complete = false
				return
			}
			if !slices.Contains(img.blobs, d.Hex) {
				img.blobs = append(img.blobs, d.Hex)
				img.BlobBytes += bb.bytes
				if bb.mtime.After(img.newest) {
					img.newest = bb.mtime
				}
			}
		}
		add(v1.Hash{Algorithm: "sha256", Hex: h})
		add(b.manifest.Config.Digest)
		for _, l := range b.manifest.Layers {
			add(l.Digest)
		}
		out[h] = img
	}
	return out
}

// name adds the references recorded to the images they name: the
// manifests a record's digest is or leads to, or the image keyed by that
// digest itself (a docker-archive's tree, by its config digest).
func (c *contents) name(byHex map[string]*Cached) {
	for _, r := range c.records {
		h := hexOf(r.Digest)
		ms := c.manifestsUnder(h, 0)
		if len(ms) == 0 && byHex[h] != nil {
			ms = []string{h}
		}
		for _, m := range ms {
			img := byHex[m]
			if !slices.Contains(img.Refs, r.Name) {
				img.Refs = append(img.Refs, r.Name)
			}
			if r.Resolved.After(img.Pulled) {
				img.Pulled = r.Resolved
			}
		}
	}
}

// List returns the images in the cache: those the blob cache at dir holds
// a manifest of, and the trees of images in trees (whose blobs may be
// gone, or never were: a docker-archive's), with the tags recorded for
// them, their sizes, when they were last used and by which processes they
// are in use now. An image's trees made through an id map (for --user)
// are its own, listed in MappedTrees and counted in its TreeBytes and
// InUse. It writes nothing, and works on a cache it cannot write
// into. Images come sorted by reference, then digest.
func List(trees *rootfs.Cache, dir string) ([]Cached, error) {
	c, err := scan(dir)
	if err != nil {
		return nil, err
	}
	return listed(trees, c), nil
}

// listed joins the blob cache's images with the trees: each image's
// unmapped tree, and those made through an id map.
func listed(trees *rootfs.Cache, c *contents) []Cached {
	byHex := c.images()
	mapped := map[string][]string{} // hex digest -> mapped trees
	for _, p := range trees.Entries() {
		d := trees.ImageDigest(p)
		if d == "" {
			continue
		}
		h := hexOf(d)
		if byHex[h] == nil {
			byHex[h] = &Cached{Digest: d}
		}
		if trees.MappedKey(p) != "" {
			mapped[h] = append(mapped[h], p)
		}
	}
	c.name(byHex)
	var out []Cached
	for h, img := range byHex {
		// The lock tells a tree being flattened in use: ask Usage
		// whether or not the tree exists.
		p := unmappedPath(trees, img.Digest)
		if isDir(p) {
			img.Tree = p
			img.TreeBytes = rootfs.DiskUsage(p)
		}
		img.use(trees.Usage(p))
		slices.Sort(mapped[h])
		for _, p := range mapped[h] {
			if !isDir(p) {
				continue
			}
			u := trees.Usage(p)
			m := MappedTree{Key: trees.MappedKey(p), Path: p, Bytes: rootfs.DiskUsage(p), InUse: u.InUse, Pids: u.Pids}
			img.MappedTrees = append(img.MappedTrees, m)
			img.TreeBytes += m.Bytes
			img.use(u)
		}
		if img.Tree == "" && len(img.MappedTrees) > 0 {
			img.Tree = img.MappedTrees[0].Path
		}
		slices.Sort(img.Pids)
		img.Pids = slices.Compact(img.Pids)
		slices.Sort(img.Refs)
		out = append(out, *img)
	}
	slices.SortFunc(out, func(a, b Cached) int {
		// Images with a tag first.
		if c := cmpBool(len(a.Refs) == 0, len(b.Refs) == 0); c != 0 {
			return c
		}
		if c := slices.Compare(a.Refs, b.Refs); c != 0 {
			return c
		}
		return strings.Compare(a.Digest, b.Digest)
	})
	return out
}

// use adds what the cache knows of how one of img's trees is used.
func (img *Cached) use(u rootfs.Usage) {
	if u.InUse {
		img.InUse = true
		img.Pids = append(img.Pids, u.Pids...)
	}
	if u.LastUsed.After(img.LastUsed) {
		img.LastUsed = u.LastUsed
	}
}

// treePaths returns the paths of img's trees, as List found them: the
// unmapped one, whether it exists or not, then the mapped ones.
func (img *Cached) treePaths(trees *rootfs.Cache) []string {
	out := []string{unmappedPath(trees, img.Digest)}
	for _, m := range img.MappedTrees {
		out = append(out, m.Path)
	}
	return out
}

// unmappedPath is where the tree of the image with this digest made
// through no id map is, or would be, whatever map trees extracts through.
func unmappedPath(trees *rootfs.Cache, digest string) string {
	if trees.IDMap == nil {
		return trees.ImagePath(digest)
	}
	plain := *trees
	plain.IDMap = nil
	return plain.ImagePath(digest)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
