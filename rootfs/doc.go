// Package rootfs holds what mrtd carries inside its binary, runc and a
// compressed root filesystem, and the on-disk cache they are unpacked into.
//
// The cache is content-addressed: runc is written once as runc-<sha256>, and
// a rootfs archive is extracted once into rootfs/<sha256>/ through a
// temporary sibling that is synced to disk, then renamed into place under a
// file lock, and the rename synced in turn. A complete entry is one whose
// directory exists, so a warm start costs a stat. Every process that uses an
// entry holds a shared lock on its .lock file for as long as it runs; entries
// nobody holds are removed by the next process that prepares the cache.
//
// A cache the process cannot write into (a read-only mount, a pre-filled
// directory of another user) serves the entries it holds and fails, saying
// why, only for what it lacks. As root, the cache is root's alone: every
// entry is owned by 0:0 and writable by no other uid, and a cache dir
// another uid could change is refused.
//
// Archives are untrusted: extraction refuses any entry that would land
// outside the target and never follows a symlink it did not create itself as
// a directory. Errors reading the archive blame the archive; errors writing
// the tree name the cache dir and what to do.
package rootfs
