// Package assets holds what mrtd carries inside its binary, runc and a
// compressed root filesystem, and the on-disk cache they are unpacked into.
//
// The cache is content-addressed: runc is written once as runc-<sha256>, and
// a rootfs archive is extracted once into rootfs/<sha256>/ through a
// temporary sibling that is renamed into place under a file lock. A complete
// entry is one whose directory exists, so a warm start costs a stat. Every
// process that uses an entry holds a shared lock on its .lock file for as long
// as it runs; entries nobody holds are removed by the next process that
// prepares the cache.
//
// Archives are untrusted: extraction refuses any entry that would land
// outside the target and never follows a symlink it did not create itself as
// a directory.
package assets
