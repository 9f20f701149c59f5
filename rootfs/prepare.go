package rootfs

import (
	"fmt"
	"sync"

	"github.com/go-logr/logr"
)

// Options says what Prepare prepares. With Rootfs nil and Runc empty, it
// is the runc and the rootfs embedded in this binary.
type Options struct {
	// Rootfs is where the root filesystem comes from; nil means the
	// embedded one.
	Rootfs Source
	// Runc is the path of a runc binary to use as it is; empty means the
	// embedded one, written into the cache.
	Runc string
	// CacheDir is the Cache's directory.
	CacheDir string
	// RootOwned is set when mrtd runs as root: see Cache.RootOwned.
	RootOwned bool
	// Map, when set, is called with the tree Rootfs opens to, as it is
	// extracted: a non-nil IDMap it returns makes Prepare open Rootfs
	// again through it (Cache.IDMap), and return that tree, holding
	// both. A Dir, used in place, is never mapped. Its error is
	// Prepare's, as is.
	Map func(tree string) (*IDMap, error)
	// MappedTrees is set when this process runs in the user namespace
	// that maps the owners of trees extracted through an IDMap: see
	// Cache.MappedTrees.
	MappedTrees bool
}

// Prepared is runc and a root filesystem, held in use until Close.
type Prepared struct {
	// Runc is the runc binary's path; Rootfs is the root filesystem
	// directory's.
	Runc, Rootfs string
	// Unmapped is the tree Rootfs was extracted from through the IDMap
	// of Options.Map, held as long as Rootfs; empty when Rootfs was not
	// made through a map.
	Unmapped string
	// RuncVersion is the embedded runc's version, or "external" for
	// Options.Runc. RootfsDigest is the sha256 the tree was made from, or
	// "dir" for a directory used in place.
	RuncVersion, RootfsDigest string

	cache *Cache
	emb   *Embedded // nil in a binary without assets
	mu    sync.Mutex
	refs  []*Ref
	init  *Ref // once Init wrote it
}

// Close releases what Prepare and Init hold in use; the cache may then
// prune it.
func (p *Prepared) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.refs {
		r.Close()
	}
	p.refs, p.init = nil, nil
}

// Init returns the path of the init this binary carries, which --init runs
// as each container's pid 1. The first call writes it into the cache as
// init-<sha256>, unless it is there, and holds it in use until Close: a
// process that never runs --init neither writes it nor needs a cache that
// holds it. It returns ErrNoInit in a binary without assets.
func (p *Prepared) Init() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.init != nil {
		return p.init.Path, nil
	}
	if p.emb == nil || len(p.emb.Init) == 0 {
		return "", ErrNoInit
	}
	ref, err := p.cache.Init(p.emb.Init, p.emb.InitDigest)
	if err != nil {
		return "", err
	}
	p.init = ref
	p.refs = append(p.refs, ref)
	return ref.Path, nil
}

// builtin is Builtin; tests replace it.
var builtin = Builtin

// Prepare finds or unpacks runc and the rootfs that opts name, then prunes
// from the cache what no process uses, keeping this binary's own runc,
// rootfs and init even when opts override them: the next run will want
// them. The init is written only when asked for (Prepared.Init). With
// Options.Map, the rootfs is extracted a second time, through the map it
// returns, and both trees are held and kept.
//
// Errors say what failed, not which flag or build step would fix it: see
// ErrNotEmbedded, ErrMalformedDigests, *CacheError (and its Remedy),
// *DigestMismatchError and *MountPointsError.
func Prepare(opts Options, log logr.Logger) (*Prepared, error) {
	cache := &Cache{
		Dir: opts.CacheDir,
		// setuid and setgid bits are useless under no_new_privs, and
		// harmful on the host: drop them always.
		DropSetID: true,
		// Root's containers run what the cache holds, so no host uid but
		// root may change it, not even the unprivileged one container root
		// maps to: that uid sees the tree as owned by the overflow uid, and
		// reads and runs it through its "other" permission bits.
		RootOwned: opts.RootOwned,
		// Images' trees go with their blobs, by mrtd prune.
		KeepImageTrees: true,
		MappedTrees:    opts.MappedTrees,
		// The name these messages have always been logged under.
		Log: log.WithName("assets"),
	}
	p := &Prepared{Runc: opts.Runc, RuncVersion: "external", RootfsDigest: "dir", cache: cache}

	emb, err := builtin()
	if err != nil && (opts.Runc == "" || opts.Rootfs == nil) {
		return nil, err
	}
	p.emb = emb
	cached := false
	if p.Runc == "" {
		ref, err := cache.Runc(emb.Runc, emb.RuncDigest)
		if err != nil {
			return nil, err
		}
		p.refs = append(p.refs, ref)
		p.Runc = ref.Path
		p.RuncVersion = emb.RuncVersion
		cached = true
	}

	src := opts.Rootfs
	if src == nil {
		src = emb
	}
	ref, err := src.Open(cache)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.refs = append(p.refs, ref)
	p.Rootfs = ref.Path
	if ref.Digest != "" {
		p.RootfsDigest = ref.Digest
		cached = true
	}
	if opts.Map != nil {
		m, err := opts.Map(ref.Path)
		if err != nil {
			p.Close()
			return nil, err
		}
		if m != nil && ref.Digest != "" {
			// The same source, through the map: an entry of its own.
			mapped := *cache
			mapped.IDMap = m
			mref, err := src.Open(&mapped)
			if err != nil {
				p.Close()
				return nil, err
			}
			p.refs = append(p.refs, mref)
			if mref.Digest != ref.Digest {
				p.Close()
				return nil, fmt.Errorf("rootfs %s changed while it was prepared (%s, then %s)", src, ref.Digest, mref.Digest)
			}
			p.Unmapped, p.Rootfs = ref.Path, mref.Path
		}
	}

	if cached {
		keep := []string{p.Rootfs}
		for _, r := range p.refs {
			keep = append(keep, r.Path)
		}
		if emb != nil {
			keep = append(keep, cache.RuncPath(emb.RuncDigest), cache.RootfsPath(emb.RootfsDigest), cache.InitPath(emb.InitDigest))
		}
		if err := cache.Prune(keep...); err != nil {
			log.Error(err, "pruning the cache")
		}
	}
	return p, nil
}
