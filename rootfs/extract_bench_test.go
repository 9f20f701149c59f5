package rootfs

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkExtractArchive extracts the archive MRTD_BENCH_ARCHIVE (a real
// rootfs, such as build/rootfs.tar.zst) as the cache does, into a new
// directory under MRTD_BENCH_DIR (default: the test's temporary
// directory) each round, with a sync before it, then flushes the tree as
// publish does (syncfs, reported apart as sync-ms/op), so that a profile
// shows where a cold start's extraction spends its time:
//
//	MRTD_BENCH_ARCHIVE=$PWD/build/rootfs.tar.zst go test -run '^$' \
//	    -bench ExtractArchive -benchtime 5x -cpuprofile cpu.out ./rootfs/
//
// Each tree is left in place until the end: on ext4 without a journal,
// creating files right after many were deleted is several times slower.
func BenchmarkExtractArchive(b *testing.B) {
	archive := os.Getenv("MRTD_BENCH_ARCHIVE")
	if archive == "" {
		b.Skip("MRTD_BENCH_ARCHIVE is not set")
	}
	parent := os.Getenv("MRTD_BENCH_DIR")
	if parent == "" {
		parent = b.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "extract-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { RemoveTree(dir) })
	opts := extractOptions{DropSetID: true}
	if os.Geteuid() == 0 {
		// As mrtd run by root extracts (Cache.RootOwned).
		opts.Owner, opts.NoSharedWrite = &Owner{}, true
	}
	var bytes int64
	var syncing time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		root := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(root, 0o700); err != nil {
			b.Fatal(err)
		}
		f, err := os.Open(archive)
		if err != nil {
			b.Fatal(err)
		}
		unix.Sync()
		b.StartTimer()
		st, err := extract(f, root, opts)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		bytes = st.Bytes
		t := time.Now()
		if err := syncFS(root); err != nil {
			b.Fatal(err)
		}
		syncing += time.Since(t)
	}
	b.SetBytes(bytes)
	b.ReportMetric(float64(syncing.Milliseconds())/float64(b.N), "sync-ms/op")
}
