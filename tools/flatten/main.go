// Command flatten fetches an image and flattens its layers into a
// directory, as mrtd does into its cache, for `make ROOTFS_IMAGE=REF` to pack
// as the embedded rootfs (tools/pack):
//
//	flatten -o DIR [-config FILE] [-platform os/arch[/variant]] [-tls-verify=false] REF
//
// REF is what `mrtd --image` takes: a registry's [REGISTRY/]REPO[:TAG] or
// @sha256:DIGEST, oci:PATH[:TAG] or docker-archive:PATH. The layers go
// through package image and rootfs.Cache.Image, under the same rules as
// mrtd's (whiteouts, hardlinks across layers, no escapes, no devices,
// setuid and setgid dropped, diff_ids checked, the size limit); blobs are
// fetched into a temporary cache beside DIR, removed at the end. DIR is
// replaced. Entries are owned by root when run as root, else by the user:
// mrtd ignores an archive's owners. -config writes the image config (Env,
// Entrypoint, Cmd, WorkingDir, User...) as JSON, for the record: the
// embedded rootfs carries no config.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/mrt-project/mrt/image"
	"github.com/mrt-project/mrt/rootfs"
)

func main() {
	out := flag.String("o", "", "flatten the image into `DIR` (replaced)")
	configOut := flag.String("config", "", "write the image config as JSON to `FILE`")
	platform := flag.String("platform", "", "the `os/arch[/variant]` to take from a multi-platform image (default: this host's)")
	tlsVerify := flag.Bool("tls-verify", true, "verify the registry's TLS certificate; false also allows plain HTTP")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: flatten -o DIR [-config FILE] REF\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	log := funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, "flatten:", args) }, funcr.Options{})
	o := image.Options{Platform: *platform, Insecure: !*tlsVerify, Log: log}
	if err := run(flag.Arg(0), *out, *configOut, o, log); err != nil {
		fmt.Fprintf(os.Stderr, "flatten: %v\n", err)
		os.Exit(1)
	}
}

// run flattens ref into out through a temporary cache beside it.
func run(ref, out, configOut string, o image.Options, log logr.Logger) error {
	r, err := image.Parse(ref)
	if err != nil {
		return err
	}
	out, err = filepath.Abs(out)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".flatten-")
	if err != nil {
		return err
	}
	defer rootfs.RemoveTree(tmp)
	o.Dir = filepath.Join(tmp, "images")
	src := image.NewSource(r, o)
	cache := &rootfs.Cache{
		Dir:       filepath.Join(tmp, "cache"),
		RootOwned: os.Geteuid() == 0,
		DropSetID: true,
		Log:       log,
	}
	tree, err := src.Open(cache)
	if err != nil {
		return err
	}
	defer tree.Close()
	if err := rootfs.RemoveTree(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(tree.Path, out); err != nil {
		return err
	}
	if configOut != "" {
		data, err := json.MarshalIndent(src.Config(), "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(configOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	fmt.Println(tree.Digest)
	return nil
}
