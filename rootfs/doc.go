// Package rootfs is where a worker's root filesystem comes from: the
// sources of a root filesystem, the on-disk cache they are unpacked into,
// safe extraction of untrusted archives, and the locks that let processes
// share the cache. It also carries what mrtd embeds in its binary: runc, a
// static init for --init and a compressed root filesystem (Builtin).
//
// Prepare is the entry point: it finds or unpacks runc and the rootfs that
// its Options name, and prunes the cache. A Source says where the rootfs
// comes from: the embedded archive (*Embedded), a directory used in place
// (Dir) or an archive file (ArchiveFile). An image's layers, fetched by
// the caller, are flattened into the cache by Cache.Image.
//
// The cache is content-addressed, and its layout is the Cache's alone
// (RuncPath and RootfsPath give it to callers that must name an entry):
// runc is written once as runc-<sha256> (the init, once asked for, as
// init-<sha256>, mode 0755), and a rootfs archive is extracted
// once into rootfs/<sha256>/ through a temporary sibling that is synced to
// disk, then renamed into place under a file lock, and the rename synced in
// turn. An image is flattened the same way into rootfs/image-<hex>/, keyed
// by its manifest's digest: its layers are applied in order into one
// temporary sibling, each checked against its DiffID as it is read, and
// nothing of a failed flattening is kept. A complete entry is one whose
// directory exists, so a warm start costs a stat. An archive file's digest is
// remembered by its stat (archives/<sha256 of its path>, trusted by git's
// racy-clean rule), so a warm start from one neither reads nor hashes it;
// an extraction still verifies the archive against the digest. Every process that uses an entry holds a shared lock on its
// .lock file for as long as it runs; entries nobody holds are removed by the
// next process that prepares the cache.
//
// A cache the process cannot write into (a read-only mount, a pre-filled
// directory of another user) serves the entries it holds and fails, saying
// why, only for what it lacks. As root, the cache is root's alone: every
// entry is owned by 0:0 and writable by no other uid, and a cache dir
// another uid could change is refused.
//
// For a container whose ids a user namespace maps (Podman-style keep-id),
// a tree is extracted again through an IDMap (Cache.IDMap, Options.Map):
// every entry is chowned to the id its archive owner maps to, and the tree
// is an entry of its own, <key>+<map key>. Only a process in that
// namespace (Cache.MappedTrees) prunes such trees: one outside it could
// not remove them whole.
//
// Archives are untrusted: extraction refuses any entry that would land
// outside the target and never follows a symlink it did not create itself as
// a directory. An image's layers are too, each under the same rules, and
// "created itself" spans the layers: a lower layer's directory is a parent
// to write into, a lower layer's symlink never is, and a hardlink may point
// at a lower layer's file (the inode it names when the link is applied). A
// layer's entry replaces a lower layer's of any type (a directory over a
// directory keeps its children); .wh.NAME whiteouts and .wh..wh..opq
// opaque markers hide what lower layers put there, never what their own
// layer wrote, wherever they come in it. What an image writes is bounded
// (ImageTree.MaxSize) against decompression bombs. Errors reading the archive blame the archive; errors writing
// the tree name the cache dir and carry a Remedy. No error names a flag or
// a build step: the caller, which knows its flags, words what to do.
//
// rootfs imports none of mrtd's other packages; the daemon and cmd/mrtd
// import it.
package rootfs
