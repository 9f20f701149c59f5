// Package image is the second kind of root filesystem source: an image
// pulled from a registry, read from an OCI image layout, or from a
// `docker save` tarball.
//
// Parse reads a reference. A registry reference is Docker's: unqualified
// names mean docker.io, and single-segment names docker.io/library/…
// ("debian:bookworm" is docker.io/library/debian:bookworm), a missing tag
// is :latest, and a @sha256: digest pins the content (and wins over a tag).
// oci:PATH[:TAG] is an OCI image layout on disk and docker-archive:PATH a
// tarball written by `docker save`.
//
// Pull fetches an image into the blob cache (Options.Dir, which mrtd puts at
// <cache-dir>/images); a Source (NewSource) is a rootfs.Source that pulls
// per the pull policy, then hands the image's layers to rootfs.Cache.Image,
// which flattens them into a tree keyed by the manifest digest. After Open,
// Source.Config is the image config that mrtd applies.
//
// The blob cache is content-addressed:
//
//	<Dir>/blobs/sha256/<hex>      manifests, indexes, configs and layers
//	                              (compressed, as served), written once
//	<Dir>/blobs/sha256/.tmp-*     downloads under way, or left by a crash
//	<Dir>/refs/<escaped ref>      a tag resolved once, or a digest
//	                              reference, OCI layout or docker-archive
//	                              used (with an absolute path, for
//	                              listings): JSON {name, digest}
//
// A blob is written into a temporary file and verified while it streams
// (digest and size): a mismatch is an error naming the blob's digest, and
// nothing of it is kept. A complete blob is renamed into place and never
// rewritten, so an interrupted pull leaves no partial blob, and the next
// one reuses the blobs it finished. A tag's record is written once its
// image is complete; it names what the tag resolved to (an index or a
// manifest), so the platform is chosen again at every start and a start
// with a cached tag under pull policy missing or never needs no network.
//
// Local sources (oci:, docker-archive:) are read in place at every start;
// the pull policy does not apply to them. An OCI layout's blobs are copied
// into the blob cache (verified) when its tree must be extracted; a
// docker-archive's layers are read from the tarball, and its tree is keyed
// by its config digest (docker's image ID), as it has no manifest of its
// own.
//
// Credentials come from Options.AuthFile (--authfile) or else
// $REGISTRY_AUTH_FILE, then
// $XDG_RUNTIME_DIR/containers/auth.json, then
// $XDG_CONFIG_HOME/containers/auth.json (Podman's files), then Docker's
// ~/.docker/config.json with its credential helpers.
//
// A registry's TLS certificate is verified against the system's CAs and
// every *.crt of its certs.d directories (CertDirs, Podman's:
// containers-certs.d(5)); every *.cert there, with the *.key of the same
// name, is a client certificate offered to it.
//
// image imports rootfs only.
package image
