package metrics

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
)

// Registry holds metrics and writes them in the text format. The zero
// value is not usable: call NewRegistry. Its methods are safe for
// concurrent use.
type Registry struct {
	mu      sync.Mutex
	names   map[string]bool
	sources []source
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{names: map[string]bool{}}
}

// family is one metric family at scrape time.
type family struct {
	name, help string
	typ        string // counter, gauge or histogram
	samples    []sample
}

// sample is one line of a family.
type sample struct {
	suffix string      // after the family's name: "", _bucket, _sum, _count
	labels []labelPair // in the order written
	value  float64
}

type labelPair struct{ name, value string }

// source is what a registry asks for its families when scraped.
type source interface {
	collect(add func(family))
}

// register adds s, which yields the families names. A name that is
// invalid or already registered is a programming error: it panics.
func (r *Registry) register(s source, names ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		if !validName(n, true) {
			panic(fmt.Sprintf("metrics: invalid metric name %q", n))
		}
		if r.names[n] {
			panic(fmt.Sprintf("metrics: %s registered twice", n))
		}
		r.names[n] = true
	}
	r.sources = append(r.sources, s)
}

// WriteText writes every family that has samples in the text format,
// families sorted by name.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	var fams []family
	for _, s := range r.sources {
		s.collect(func(f family) {
			if len(f.samples) > 0 {
				fams = append(fams, f)
			}
		})
	}
	r.mu.Unlock()
	slices.SortFunc(fams, func(a, b family) int { return cmp.Compare(a.name, b.name) })
	var b []byte
	for _, f := range fams {
		b = append(b, "# HELP "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = appendHelp(b, f.help)
		b = append(b, "\n# TYPE "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.typ...)
		b = append(b, '\n')
		for _, s := range f.samples {
			b = appendSample(b, f.name, s)
		}
	}
	_, err := w.Write(b)
	return err
}

// ServeHTTP answers a scrape.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	if req.Method == http.MethodHead {
		return
	}
	r.WriteText(w) // the scraper went away: nothing to tell
}
