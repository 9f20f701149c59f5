// Command pack writes a directory tree as a deterministic tar.zst archive and
// records its sha256 beside it, for mrtd to embed.
//
//	pack -o rootfs.tar.zst DIR
//
// Entries are sorted by name, owners are numeric (no user or group names),
// every mtime is fixed (SOURCE_DATE_EPOCH, else 0), and device nodes, sockets
// and FIFOs are left out: packing the same tree twice gives the same bytes.
package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
)

func main() {
	out := flag.String("o", "", "write the archive to `FILE` (and its sha256 to FILE.sha256)")
	level := flag.Int("level", 19, "zstd compression `level` (1-22)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: pack -o FILE.tar.zst DIR\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	mtime := time.Unix(0, 0)
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pack: SOURCE_DATE_EPOCH=%q is not a number of seconds\n", s)
			os.Exit(2)
		}
		mtime = time.Unix(sec, 0)
	}
	if err := packFile(*out, flag.Arg(0), options{Level: *level, ModTime: mtime}); err != nil {
		fmt.Fprintf(os.Stderr, "pack: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	Level   int
	ModTime time.Time
}

// packFile writes dir to out through a temporary file, then out.sha256.
func packFile(out, dir string, opts options) error {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".pack-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	err = pack(io.MultiWriter(tmp, h), dir, opts)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	return os.WriteFile(out+".sha256", []byte(sum+"  "+filepath.Base(out)+"\n"), 0o644)
}

// pack writes the tree under dir to w as a zstd-compressed tar.
func pack(w io.Writer, dir string, opts options) error {
	zw, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(opts.Level)),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(true))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat information", p)
		}
		hdr := &tar.Header{
			Name:    filepath.ToSlash(rel),
			Mode:    int64(st.Mode & 0o7777),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: opts.ModTime,
			Format:  tar.FormatPAX,
		}
		switch mode := fi.Mode(); {
		case mode.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case mode&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case mode.IsRegular():
			key := inode{uint64(st.Dev), st.Ino}
			if first, ok := seen[key]; ok && st.Nlink > 1 {
				hdr.Typeflag = tar.TypeLink
				hdr.Linkname = first
				break
			}
			seen[key] = hdr.Name
			hdr.Typeflag = tar.TypeReg
			hdr.Size = fi.Size()
		default:
			return nil // device nodes, sockets, FIFOs
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.Copy(tw, f)
		if err == nil && n != hdr.Size {
			err = errors.New("file changed size while packing")
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
